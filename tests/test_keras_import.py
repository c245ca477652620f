"""`sal3d import-keras`: the authors' Keras decoder (their ``cnn_network()``, restated below) becomes a sal3d
checkpoint whose decoder computes what Keras computes, and the authors' window rule is theirs.

Keras 3 (torch backend) builds the reference with He-normal kernels, random biases and BatchNorm
statistics taken from its own activations and then perturbed, so that the maps are far from constant.
It is saved by Keras 3 (``model.save("x.h5")``) and, with the same weights, in Keras 2's layout
(tests/keras_files.py): both must import to the same checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from sal3d.cli import main  # noqa: E402
from sal3d.pipeline.checkpoint import load_checkpoint, load_decoder  # noqa: E402
from sal3d.pipeline.device import CPU_DTYPE_VARIABLE  # noqa: E402
from sal3d.pipeline.inference import MapDecoder  # noqa: E402
from sal3d.pipeline.keras_h5 import KerasFileError  # noqa: E402
from sal3d.pipeline.keras_import import KerasModelMismatch, import_keras, keras_checkpoint  # noqa: E402
from sal3d.pipeline.postprocess import PostProcess  # noqa: E402
from sal3d.pipeline.store import FeatureStore  # noqa: E402
from sal3d.pipeline.windows import apply_weighting, gather_windows, window_weights  # noqa: E402
from sal3d.stages.extract import ExtractConfig, extract  # noqa: E402

from keras_files import write_keras2_model  # noqa: E402

K3, K133 = (3, 3, 3), (1, 3, 3)
# The authors' cnn_network() (their Model.py), layer by layer: (Keras class, name, filters, kernel,
# activation) for the convolutions, (class, pool size, strides) for the pools, (class,) for BatchNorm.
AUTHORS_LAYERS = [
    ("Conv3D", "conv3D_1_1", 512, K3, "relu"), ("Conv3D", "conv3D_1_5", 512, K3, "relu"),
    ("MaxPooling3D", (4, 2, 2), (1, 2, 2)), ("BatchNormalization",),
    ("Conv3DTranspose", "Deconv3D_16", 512, K133, "relu"), ("Conv3D", "conv3D_2__19", 512, K3, "relu"),
    ("Conv3DTranspose", "Deconv3D_1", 256, K3, "relu"), ("Conv3D", "conv3D_2__1", 256, K3, "relu"),
    ("Conv3D", "conv3D_2__2", 256, K3, "relu"), ("MaxPooling3D", (3, 1, 1), (1, 1, 1)), ("BatchNormalization",),
    ("Conv3DTranspose", "Deconv3D_2", 128, K133, "relu"), ("Conv3D", "conv3D__3__1", 128, K133, "relu"),
    ("Conv3D", "conv3D__3__2", 128, K133, "relu"), ("BatchNormalization",),
    ("Conv3DTranspose", "Deconv3D_3", 64, K133, "relu"), ("Conv3D", "conv3D__4__1", 64, K133, "relu"),
    ("Conv3D", "conv3D__4__2", 64, K133, "relu"), ("BatchNormalization",),
    ("Conv3DTranspose", "Deconv3D_4", 32, K133, "relu"), ("Conv3D", "conv3D__5__1", 32, K133, "relu"),
    ("Conv3D", "conv3D__5__2", 16, K133, "relu"), ("Conv3D", "conv3D__5__3", 1, K133, "sigmoid"),
]
INPUT = (6, 14, 14, 512)
TOLERANCE = 1e-4


def authors_windows(features: np.ndarray, i: int) -> np.ndarray:
    """Frame i's window as the authors' Batch_Creation (Prep_Data.py) builds it, restated: (6, ...)."""
    x = features
    rows = {0: [x[0]] * 6, 1: [x[0], x[0], x[1], x[1], x[1], x[1]], 2: [x[0], x[1], x[1], x[2], x[2], x[2]],
            3: [x[0], x[1], x[2], x[3], x[3], x[3]], 4: [x[0], x[1], x[2], x[3], x[4], x[4]],
            5: [x[0], x[1], x[2], x[3], x[4], x[5]]}
    if i in rows:
        return np.stack(rows[i])
    return np.stack([c * x[i - 5 + k] for k, c in enumerate((0.4, 0.5, 0.6, 0.7, 0.8, 1.0))])


def _layer(spec, seed):
    kind = spec[0]
    layers = keras.layers
    if kind == "MaxPooling3D":
        return layers.MaxPooling3D(spec[1], strides=spec[2])
    if kind == "BatchNormalization":
        return layers.BatchNormalization()
    init = keras.initializers.HeNormal(seed=seed)
    cls = layers.Conv3D if kind == "Conv3D" else layers.Conv3DTranspose
    strides = (1, 1, 1) if kind == "Conv3D" else (1, 2, 2)
    return cls(spec[2], spec[3], strides=strides, padding="same", activation=spec[4], name=spec[1],
               kernel_initializer=init)


def _randomize(model, rng) -> None:
    """Random biases; each BatchNorm's statistics measured on its input (random windows) then perturbed,
    gamma and beta random: activations stay in range and the maps vary."""
    x = keras.ops.convert_to_tensor(rng.random((2, *INPUT), dtype=np.float32) * 2)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            seen = keras.ops.convert_to_numpy(x).reshape(-1, x.shape[-1])
            c = seen.shape[1]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               seen.mean(0) * rng.uniform(0.8, 1.2, c), seen.var(0) * rng.uniform(0.5, 2, c) + 1e-3])
        elif layer.weights:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.05, bias.shape)])
        x = layer(x)


def keras2_config(bare_list: bool = False, layers=AUTHORS_LAYERS) -> dict | list:
    """The model_config Keras 2 wrote for the authors' model (first layer with batch_input_shape)."""
    entries = []
    for number, spec in enumerate(layers):
        kind = spec[0]
        if kind == "MaxPooling3D":
            config = {"name": f"max_pooling3d_{number}", "pool_size": list(spec[1]), "padding": "valid",
                      "strides": list(spec[2]), "data_format": "channels_last"}
        elif kind == "BatchNormalization":
            config = {"name": f"batch_normalization_{number}", "axis": -1, "momentum": 0.99, "epsilon": 0.001,
                      "center": True, "scale": True}
        else:
            config = {"name": spec[1], "filters": spec[2], "kernel_size": list(spec[3]),
                      "strides": [1, 1, 1] if kind == "Conv3D" else [1, 2, 2], "padding": "same",
                      "data_format": "channels_last", "dilation_rate": [1, 1, 1], "activation": spec[4],
                      "use_bias": spec[2]}  # the authors wrote use_bias=512 and Keras 2 kept it
            if kind == "Conv3DTranspose":
                config["output_padding"] = None
        if number == 0:
            config.update(batch_input_shape=[None, *INPUT], dtype="float32")
        entries.append({"class_name": kind, "config": {"trainable": True, **config}})
    return entries if bare_list else {"class_name": "Sequential", "config": {"name": "sequential_1", "layers": entries}}


def keras2_weights(model) -> list:
    """The model's weights as Keras 2 named them: [(layer name, [("conv3D_1_1/kernel:0", array), ...])]."""
    names = {2: ("kernel", "bias"), 4: ("gamma", "beta", "moving_mean", "moving_variance")}
    layers = []
    for number, layer in enumerate(model.layers):
        arrays = layer.get_weights()
        name = layer.name if arrays and len(arrays) == 2 else (
            f"batch_normalization_{number}" if arrays else f"max_pooling3d_{number}")
        layers.append((name, [(f"{name}/{w}:0", a) for w, a in zip(names.get(len(arrays), ()), arrays)]))
    return layers


@pytest.fixture(scope="module")
def authors_model(tmp_path_factory):
    """(the Keras model, its Keras 3 file, its Keras 2-layout file, the imported checkpoint's path)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(INPUT)] + [_layer(s, seed) for seed, s in enumerate(AUTHORS_LAYERS)])
    _randomize(model, np.random.default_rng(0))
    directory = tmp_path_factory.mktemp("keras")
    keras3 = directory / "keras3.h5"
    model.save(keras3)
    keras2 = write_keras2_model(directory / "3DSal-weighted.hdf5", keras2_config(), keras2_weights(model))
    checkpoint = directory / "imported.pt"
    import_keras(keras2, checkpoint)
    return model, keras3, keras2, checkpoint


def keras_maps(model, windows: np.ndarray) -> np.ndarray:
    """Keras' output on weighted windows (N, 6, 14, 14, 512): (N, 224, 224)."""
    return keras.ops.convert_to_numpy(model(windows.astype(np.float32), training=False))[:, 0, :, :, 0]


def sal3d_maps(checkpoint: dict, windows: np.ndarray, crop: str | None = None) -> np.ndarray:
    """sal3d's decoder of an imported checkpoint (fp32, CPU) on the same windows: (N, 224, 224)."""
    if crop:
        checkpoint = {**checkpoint, "config": {**checkpoint["config"],
                                               "decoder": {**checkpoint["config"]["decoder"], "transposed_crop": crop}}}
    model = load_decoder(checkpoint, Path("x.pt"), torch.device("cpu"), torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 4, 1, 2, 3)))  # -> (N, 512, 6, 14, 14)
    with torch.inference_mode():
        return model(x)[:, 0].numpy()


def test_keras2_keras3_and_bare_list_files_import_to_the_same_checkpoint(authors_model, tmp_path):
    _, keras3, keras2, imported = authors_model
    bare = write_keras2_model(tmp_path / "bare.h5", keras2_config(bare_list=True), keras2_weights(authors_model[0]))
    converted = [keras_checkpoint(p) for p in (keras3, keras2, bare)]
    for other in converted[1:]:
        assert other["model"].keys() == converted[0]["model"].keys()
        for key, value in converted[0]["model"].items():
            assert torch.equal(value, other["model"][key]), key
        assert {**other["config"], "imported": None} == {**converted[0]["config"], "imported": None}
    config = load_checkpoint(imported)["config"]  # what import_keras wrote, weights_only-loadable
    assert config["decoder"] == {"bn_momentum": pytest.approx(0.01), "bn_eps": pytest.approx(1e-3),
                                 "transposed_crop": "end"}
    assert (config["weighting"], config["coefficients"], config["window_rule"]) == \
        ("linear", [0.4, 0.5, 0.6, 0.7, 0.8, 1.0], "authors")
    assert config["trunk"]["preset"] == "keras-3dsal"
    assert config["imported"]["layers"][0] == "conv3D_1_1" and len(config["imported"]["layers"]) == 23


def test_imported_decoder_equals_keras_on_random_windows(authors_model):
    model, _, _, imported = authors_model
    rng = np.random.default_rng(1)
    windows = (rng.random((2, *INPUT), dtype=np.float32) * 2)
    expected = keras_maps(model, windows)
    assert expected.std() > 0.05 and 0.05 < expected.mean() < 0.95  # maps far from constant
    checkpoint = load_checkpoint(imported)
    assert np.abs(sal3d_maps(checkpoint, windows) - expected).max() < TOLERANCE
    # PyTorch's placement of the transposed convs' extra row (sal3d's own checkpoints) is not Keras'.
    assert np.abs(sal3d_maps(checkpoint, windows[:1], crop="start") - expected[:1]).max() > 0.01


def test_authors_window_rule_is_their_batch_creation():
    features = np.arange(9, dtype=np.float64)[:, None] + 1  # frame i's "feature" is i + 1
    frames = np.arange(9)
    ours = gather_windows(features, frames, rule="authors")[..., 0] * window_weights(frames, "linear", "authors")
    theirs = np.stack([authors_windows(features, i)[:, 0] for i in frames])
    np.testing.assert_allclose(ours, theirs)
    # sal3d's own rule differs for frames 0..5: other rows for 1..4, and it weights every window.
    sal3d_rule = gather_windows(features, frames)[..., 0] * window_weights(frames, "linear")
    assert [i for i in frames if not np.allclose(sal3d_rule[i], theirs[i])] == [0, 1, 2, 3, 4, 5]


def test_predict_path_equals_keras_on_windows_from_a_real_clip(authors_model, real_sample, tmp_path, monkeypatch):
    """Features of a real DHF1K clip (random-weight trunk) read back from a store; MapDecoder (what predict
    and load(...).predict_video decode with) builds the windows by the checkpoint's rule."""
    monkeypatch.setenv(CPU_DTYPE_VARIABLE, "float32")
    video = sorted((real_sample / "video").iterdir())[0]
    dataset = tmp_path / "clip"  # a folder of video files
    dataset.mkdir()
    shutil.copy(video, dataset / video.name)
    store = tmp_path / "clip.zarr"
    assert not extract(ExtractConfig(dataset, str(store), weights="random", device="cpu", batch_size=4,
                                     max_frames=6, workers=0, writers=0)).failed
    reader = FeatureStore(str(store), mode="r")
    features = np.asarray(reader.features(reader.video_ids()[0])[0:6])  # float16 (6, 512, 14, 14)
    targets = np.array([1, 5])
    model = authors_model[0]
    checkpoint = load_checkpoint(authors_model[3])
    decoder = MapDecoder.load(checkpoint, authors_model[3], torch.device("cpu"), PostProcess("224", 0.0, False))
    (frames, maps), = decoder.batches(features, targets, 0, 224, 224)
    assert frames.tolist() == targets.tolist()
    windows = np.stack([authors_windows(features.astype(np.float32), i) for i in targets])  # (2, 6, 512, 14, 14)
    expected = keras_maps(model, windows.transpose(0, 1, 3, 4, 2))
    assert expected.std() > 0.01
    assert np.abs(maps - expected).max() < TOLERANCE


def _variant(tmp_path, authors_model, name, edit):
    config, weights = keras2_config(), keras2_weights(authors_model[0])
    edit(config["config"]["layers"], weights)
    return write_keras2_model(tmp_path / name, config, weights)


def test_refusals_name_the_file_and_the_first_layer_that_differs(authors_model, tmp_path):
    keras2 = authors_model[2]
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(keras2.read_bytes()[: keras2.stat().st_size // 2])
    with pytest.raises(KerasFileError, match="truncated.hdf5"):
        keras_checkpoint(truncated)

    def one_more(layers, weights):
        layers.append({"class_name": "Conv3D", "config": {**layers[-1]["config"], "name": "extra"}})
        weights.append(("extra", [("extra/kernel:0", np.zeros((1, 3, 3, 1, 1))), ("extra/bias:0", np.zeros(1))]))

    with pytest.raises(KerasModelMismatch, match=r"longer.hdf5: layer 24 'extra' \(Conv3D\) is one more"):
        keras_checkpoint(_variant(tmp_path, authors_model, "longer.hdf5", one_more))

    def narrower(layers, weights):  # conv3D_2__19 with 256 filters (and conv3D_2__1 taking 256 in)
        layers[5]["config"]["filters"] = 256
        weights[5] = ("conv3D_2__19", [("conv3D_2__19/kernel:0", np.zeros((3, 3, 3, 512, 256))),
                                       ("conv3D_2__19/bias:0", np.zeros(256))])

    with pytest.raises(KerasModelMismatch, match=r"narrow.hdf5: layer 6 'conv3D_2__19' filters 256, sal3d's decoder 512"):
        keras_checkpoint(_variant(tmp_path, authors_model, "narrow.hdf5", narrower))

    def wider_weights(layers, weights):  # the config says 512, the arrays hold 1024
        weights[0] = ("conv3D_1_1", [("conv3D_1_1/kernel:0", np.zeros((3, 3, 3, 512, 1024))),
                                     ("conv3D_1_1/bias:0", np.zeros(1024))])

    with pytest.raises(KerasModelMismatch, match=r"conv3D_1_1.*\(3, 3, 3, 512, 1024\).*\(3, 3, 3, 512, 512\)"):
        keras_checkpoint(_variant(tmp_path, authors_model, "wide.hdf5", wider_weights))


def test_cli_import_keras_writes_a_checkpoint_and_refuses_in_one_line(authors_model, tmp_path):
    out = tmp_path / "3dsal.pt"
    done = CliRunner().invoke(main, ["import-keras", str(authors_model[2]), str(out)])
    assert done.exit_code == 0, done.output
    assert "23 Keras layers" in done.output and load_checkpoint(out)["config"]["window_rule"] == "authors"
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5")
    refused = CliRunner().invoke(main, ["import-keras", str(bad), str(tmp_path / "no.pt")])
    assert refused.exit_code != 0 and refused.output.count("\n") == 1 and "bad.hdf5" in refused.output
    assert not (tmp_path / "no.pt").exists()


def test_checkpoints_without_the_new_settings_load_as_before():
    """A checkpoint that records no transposed_crop nor window_rule (every one sal3d trained so far)
    gets PyTorch's padding and sal3d's window rule."""
    from sal3d.pipeline.decoder import SaliencyDecoder

    checkpoint = {"model": SaliencyDecoder().state_dict(), "config": {"coefficients": [1.0] * 6}}
    decoder = MapDecoder.load(checkpoint, Path("old.pt"), torch.device("cpu"), PostProcess("224", 0.0, False))
    deconv = decoder.model.block2[0]
    assert (deconv.crop, deconv.padding, deconv.output_padding) == ("start", (0, 1, 1), (0, 1, 1))
    assert decoder.rule == "sal3d"
    windows = torch.rand(1, 6, 512, 14, 14)
    assert torch.equal(apply_weighting(windows, window_weights([2], "none")), apply_weighting(windows, "none"))
