"""`sal3d import-keras`: the authors' Keras decoder (their ``cnn_network()``, restated in
tests/keras_files.py) becomes a sal3d checkpoint whose decoder computes what Keras computes, and the
authors' window rule is theirs.

Keras 3 (torch backend) builds the reference with He-normal kernels, random biases and BatchNorm
statistics taken from its own activations and then perturbed, so that the maps are far from constant.
It is saved by Keras 3 (``model.save("x.h5")``) and, with the same weights, in Keras 2's layout: both
must import to the same checkpoint. The decoder on windows built from a real clip, trunk included, is
tests/test_keras_end_to_end.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sal3d.cli import main
from sal3d.pipeline.checkpoint import load_checkpoint, load_decoder
from sal3d.pipeline.inference import MapDecoder
from sal3d.pipeline.keras_h5 import KerasFileError
from sal3d.pipeline.keras_import import KerasModelMismatch, keras_checkpoint
from sal3d.pipeline.postprocess import PostProcess
from sal3d.pipeline.windows import apply_weighting, gather_windows, window_weights

from keras_files import (AuthorsFiles, authors_files, authors_window, generated_window, keras2_config,
                         keras2_weights, keras_decoder_maps, write_keras2_model)

TOLERANCE = 1e-4


@pytest.fixture(scope="session")
def authors(tmp_path_factory) -> AuthorsFiles:
    """The authors' decoder in Keras, its Keras 2 file and its import (built once per session; skips
    without Keras)."""
    return authors_files(tmp_path_factory)


def sal3d_maps(checkpoint: dict, windows: np.ndarray, crop: str | None = None) -> np.ndarray:
    """sal3d's decoder of an imported checkpoint (fp32, CPU) on windows (N, 6, 14, 14, 512): (N, 224, 224)."""
    if crop:
        checkpoint = {**checkpoint, "config": {**checkpoint["config"],
                                               "decoder": {**checkpoint["config"]["decoder"], "transposed_crop": crop}}}
    model = load_decoder(checkpoint, Path("x.pt"), torch.device("cpu"), torch.float32)
    x = torch.from_numpy(np.ascontiguousarray(windows.transpose(0, 4, 1, 2, 3)))  # -> (N, 512, 6, 14, 14)
    with torch.inference_mode():
        return model(x)[:, 0].numpy()


def test_keras2_keras3_and_bare_list_files_import_to_the_same_checkpoint(authors, tmp_path):
    keras2, imported = authors.decoder_h5, authors.checkpoint
    keras3 = tmp_path / "keras3.h5"
    authors.decoder.save(keras3)
    bare = write_keras2_model(tmp_path / "bare.h5", keras2_config(bare_list=True), keras2_weights(authors.decoder))
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


def test_imported_decoder_equals_keras_on_a_random_window(authors):
    # the trunk's features of other random frames: the scale the decoder's statistics were made for
    window = generated_window(authors.vgg16_h5, seed=1)
    expected = keras_decoder_maps(authors.decoder, window)
    assert expected.std() > 0.05 and 0.05 < expected.mean() < 0.95  # a map far from constant
    checkpoint = load_checkpoint(authors.checkpoint)
    assert np.abs(sal3d_maps(checkpoint, window) - expected).max() < TOLERANCE
    # PyTorch's placement of the transposed convs' extra row (sal3d's own checkpoints) is not Keras'.
    assert np.abs(sal3d_maps(checkpoint, window, crop="start") - expected).max() > 0.01


def test_authors_window_rule_is_their_batch_creation():
    features = np.arange(9, dtype=np.float64)[:, None] + 1  # frame i's "feature" is i + 1
    frames = np.arange(9)
    ours = gather_windows(features, frames, rule="authors")[..., 0] * window_weights(frames, "linear", "authors")
    theirs = np.stack([authors_window(features, i)[:, 0] for i in frames])
    np.testing.assert_allclose(ours, theirs)
    # sal3d's own rule differs for frames 0..5: other rows for 1..4, and it weights every window.
    sal3d_rule = gather_windows(features, frames)[..., 0] * window_weights(frames, "linear")
    assert [i for i in frames if not np.allclose(sal3d_rule[i], theirs[i])] == [0, 1, 2, 3, 4, 5]


def _variant(tmp_path, authors, name, edit):
    config, weights = keras2_config(), keras2_weights(authors.decoder)
    edit(config["config"]["layers"], weights)
    return write_keras2_model(tmp_path / name, config, weights)


def test_refusals_name_the_file_and_the_first_layer_that_differs(authors, tmp_path):
    keras2 = authors.decoder_h5
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(keras2.read_bytes()[: keras2.stat().st_size // 2])
    with pytest.raises(KerasFileError, match="truncated.hdf5"):
        keras_checkpoint(truncated)

    def one_more(layers, weights):
        layers.append({"class_name": "Conv3D", "config": {**layers[-1]["config"], "name": "extra"}})
        weights.append(("extra", [("extra/kernel:0", np.zeros((1, 3, 3, 1, 1))), ("extra/bias:0", np.zeros(1))]))

    with pytest.raises(KerasModelMismatch, match=r"longer.hdf5: layer 24 'extra' \(Conv3D\) is one more"):
        keras_checkpoint(_variant(tmp_path, authors, "longer.hdf5", one_more))

    def narrower(layers, weights):  # conv3D_2__19 with 256 filters (and conv3D_2__1 taking 256 in)
        layers[5]["config"]["filters"] = 256
        weights[5] = ("conv3D_2__19", [("conv3D_2__19/kernel:0", np.zeros((3, 3, 3, 512, 256))),
                                       ("conv3D_2__19/bias:0", np.zeros(256))])

    with pytest.raises(KerasModelMismatch, match=r"narrow.hdf5: layer 6 'conv3D_2__19' filters 256, sal3d's decoder 512"):
        keras_checkpoint(_variant(tmp_path, authors, "narrow.hdf5", narrower))

    def wider_weights(layers, weights):  # the config says 512, the arrays hold 1024
        weights[0] = ("conv3D_1_1", [("conv3D_1_1/kernel:0", np.zeros((3, 3, 3, 512, 1024))),
                                     ("conv3D_1_1/bias:0", np.zeros(1024))])

    with pytest.raises(KerasModelMismatch, match=r"conv3D_1_1.*\(3, 3, 3, 512, 1024\).*\(3, 3, 3, 512, 512\)"):
        keras_checkpoint(_variant(tmp_path, authors, "wide.hdf5", wider_weights))


def test_cli_import_keras_writes_a_checkpoint_and_refuses_in_one_line(authors, tmp_path):
    out = tmp_path / "3dsal.pt"
    done = CliRunner().invoke(main, ["import-keras", str(authors.decoder_h5), str(out)])
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
