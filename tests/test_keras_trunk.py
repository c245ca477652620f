"""The keras-3dsal trunk preset: Keras' VGG16 weights file, the 3DSal authors' frame preparation
(BGR, cv2.resize on uint8, 0..255 without mean subtraction) and their untrained BatchNormalization.

Keras 3 (torch backend) is the reference: its VGG16 with random He-normal weights, saved in the Keras
2 HDF5 weights layout, must give through sal3d the features Keras computes from the same frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from sal3d.cli import main as cli_main
from sal3d.pipeline.checkpoint import save_checkpoint
from sal3d.pipeline.contract import fingerprint_mismatch
from sal3d.pipeline.datasets import VideoEntry
from sal3d.pipeline.decoder import SaliencyDecoder
from sal3d.pipeline.frames import FrameReader
from sal3d.pipeline.keras_h5 import KerasFileError
from sal3d.pipeline.keras_vgg16 import KerasWeightsError
from sal3d.pipeline.preprocessing import KERAS_3DSAL
from sal3d.pipeline.store import FORMAT_VERSION, FeatureStore, StoreError
from sal3d.pipeline.trunk import KERAS_PRESET, TrunkWeightsError, load_trunk, trunk_fingerprint, weights_for
from sal3d.pipeline.windows import weighting_coefficients

from keras_files import he_normal_convs, keras_or_skip, vgg16_h5, vgg16_layers, write_keras2_weights

cv2 = pytest.importorskip("cv2")

BN_SCALE = 1 / np.sqrt(1 + 1e-3)  # Keras' untrained BatchNormalization: x / sqrt(1 + epsilon)
# A torchvision trunk's fingerprint (seeded random weights; the digest does not matter here).
TORCHVISION_RANDOM = trunk_fingerprint("torchvision", "random:seed=0", "0" * 64)


@pytest.fixture(scope="session")
def vgg_h5(tmp_path_factory) -> Path:
    """Keras' VGG16 no-top weights file layout, random He-normal weights (written without Keras, once
    per session)."""
    return vgg16_h5(tmp_path_factory)


@pytest.fixture(scope="module")
def vgg_trunk(vgg_h5):
    """The preset's trunk loaded from `vgg_h5`."""
    return load_trunk(str(vgg_h5), KERAS_PRESET)


@pytest.fixture(scope="module")
def keras():
    return keras_or_skip()


def first_frame(real_sample: Path) -> tuple[VideoEntry, np.ndarray]:
    """Video 300 of the real sample and its first frame at full size, uint8 RGB (360, 640, 3)."""
    import decord

    path = real_sample / "video" / "300.AVI"
    return VideoEntry("300", path), decord.VideoReader(str(path), num_threads=1)[0].asnumpy()


def relative(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    return float(np.abs(ours.astype(np.float64) - reference).max() / np.abs(reference).max())


# ---------------------------------------------------------------------------- equal to Keras


def test_preset_gives_keras_block5_conv3_then_batchnorm_on_a_real_frame(keras, real_sample, tmp_path):
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    rng = np.random.default_rng(1)
    for layer in vgg.layers:
        if layer.get_weights():
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), kernel.shape).astype(np.float32),
                               rng.normal(0, 0.5, bias.shape).astype(np.float32)])
    # The authors' feature model: VGG16 up to block5_conv3 (its ReLU), then an untrained BatchNormalization.
    block5_conv3 = vgg.get_layer("block5_conv3").output
    reference_model = keras.Model(vgg.input, [block5_conv3, keras.layers.BatchNormalization()(block5_conv3)])
    write_keras2_weights(tmp_path / "vgg16.h5", [(layer.name, layer.get_weights()) for layer in vgg.layers])

    entry, frame = first_frame(real_sample)
    # Keras' side as the authors' Prep_Data.py: the BGR uint8 frame, cv2.resize, float, predict.
    resized_bgr = cv2.resize(np.ascontiguousarray(frame[..., ::-1]), (224, 224))
    raw, reference = (out.transpose(0, 3, 1, 2) for out in
                      reference_model.predict(resized_bgr.astype(np.float32)[None], verbose=0))

    frames = FrameReader(entry, KERAS_3DSAL).read(0, 1)  # decoded at full size, cv2-resized, RGB
    np.testing.assert_array_equal(frames[0][..., ::-1], resized_bgr)
    trunk = load_trunk(str(tmp_path / "vgg16.h5"), KERAS_PRESET)
    with torch.inference_mode():
        ours = trunk.module(trunk.preprocessing.normalize(torch.from_numpy(frames))).numpy()
    assert ours.shape == reference.shape == (1, 512, 14, 14)
    assert np.std(reference) > 0.1 * np.abs(reference).max()  # far from constant
    difference = relative(ours, reference)
    print(f"max relative difference to Keras: {difference:.2e}")
    assert difference < 1e-4
    # The BatchNormalization is Keras' untrained one: block5_conv3's ReLU output scaled by 1/sqrt(1.001).
    assert relative(ours, raw * BN_SCALE) < 1e-4 and relative(ours, raw) > 4e-4
    # Keras 3's own legacy save of the same model (a full-model file, other weight names) loads alike.
    vgg.save(tmp_path / "keras3.h5")
    assert load_trunk(str(tmp_path / "keras3.h5"), KERAS_PRESET).fingerprint["weights_sha256"] == \
        trunk.fingerprint["weights_sha256"]


def test_weights_are_read_by_order_whatever_their_names(vgg_trunk, tmp_path):
    # Keras' older VGG16 file names its arrays block1_conv1_W_1:0 and block1_conv1_b_1:0.
    write_keras2_weights(tmp_path / "old.h5", vgg16_layers(
        he_normal_convs(0), names=lambda name: (f"{name}_W_1:0", f"{name}_b_1:0")))
    new, old = vgg_trunk, load_trunk(str(tmp_path / "old.h5"), KERAS_PRESET)
    assert new.fingerprint["weights_sha256"] == old.fingerprint["weights_sha256"]
    # Keras' (kh, kw, in, out) kernel is torch's (out, in, kh, kw), unflipped.
    kernel, bias = he_normal_convs(0)[0]
    np.testing.assert_array_equal(new.module[0].weight.numpy(), kernel.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(new.module[0].bias.numpy(), bias)


# ---------------------------------------------------------------------------- refusals


def test_refuses_a_weights_file_missing_a_layer_or_with_a_wrong_shape(sample_dir, tmp_path):
    convs = he_normal_convs(0)
    write_keras2_weights(tmp_path / "short.h5", vgg16_layers(convs[:12]))
    with pytest.raises(KerasWeightsError, match=r"short\.h5: .*12 layers.*block5_conv3"):
        load_trunk(str(tmp_path / "short.h5"), KERAS_PRESET)
    narrow = list(convs)
    narrow[5] = (convs[5][0][..., :128], convs[5][1][:128])
    write_keras2_weights(tmp_path / "narrow.h5", vgg16_layers(narrow))
    with pytest.raises(KerasWeightsError) as caught:
        load_trunk(str(tmp_path / "narrow.h5"), KERAS_PRESET)
    assert str(caught.value) == (f"{tmp_path / 'narrow.h5'}: layer 'block3_conv2' (VGG-16's block3_conv2, layer 6 "
                                 "of 13) kernel has shape (3, 3, 256, 128), VGG-16 needs (3, 3, 256, 256)")
    # On the command line: one line, exit status 2, no store made.
    result = CliRunner().invoke(cli_main, ["extract", str(sample_dir), str(tmp_path / "s.zarr"), "--trunk", KERAS_PRESET,
                                           "--weights", str(tmp_path / "short.h5")])
    assert result.exit_code == 2 and "missing" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s.zarr").exists()


def test_refuses_a_truncated_weights_file(vgg_h5, tmp_path):
    data = vgg_h5.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(KerasFileError, match=r"cut\.h5: "):
        load_trunk(str(tmp_path / "cut.h5"), KERAS_PRESET)
    with pytest.raises(TrunkWeightsError, match="not torchvision's"):
        load_trunk("imagenet", KERAS_PRESET)


# ---------------------------------------------------------------------------- extract, fingerprints, mixing


def test_extract_with_the_preset_fingerprints_it_and_mixing_is_refused(sample_dir, vgg_h5, vgg_trunk, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("SAL3D_CPU_DTYPE", "float32")  # compare with the fp32 module below
    store = tmp_path / "keras.zarr"
    result = CliRunner().invoke(cli_main, ["extract", str(sample_dir), str(store), "--trunk", KERAS_PRESET,
                                           "--weights", str(vgg_h5), "--videos", "0001", "--max-frames", "1",
                                           "--writers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    trunk = vgg_trunk
    fingerprint = FeatureStore(str(store)).fingerprint
    assert fingerprint == trunk.fingerprint
    assert fingerprint["preset"] == KERAS_PRESET and fingerprint["weights"] == f"keras-h5:{vgg_h5.name}"
    assert fingerprint["preprocessing"]["color"] == "BGR" and "cv2.resize" in fingerprint["preprocessing"]["resize"]
    assert len(fingerprint["weights_sha256"]) == 64
    # The store holds what the preset's module makes of the full-size frames, cv2-resized.
    frames = FrameReader(VideoEntry("0001", next((sample_dir / "video").glob("001.*"))), KERAS_3DSAL).read(0, 1)
    with torch.inference_mode():
        expected = trunk.module(trunk.preprocessing.normalize(torch.from_numpy(frames))).numpy()
    stored = FeatureStore(str(store)).features("0001")[:]
    assert stored.shape == (1, 512, 14, 14) and relative(stored, expected) < 1e-3  # float16 storage

    # torchvision features never go into it (extract opens its store so) ...
    with pytest.raises(StoreError, match="another trunk.*preset"):
        FeatureStore(str(store), mode="a", trunk=TORCHVISION_RANDOM)
    assert FeatureStore(str(store)).video_ids(complete_only=False) == ["0001"]
    # ... and a decoder trained on torchvision features does not predict from it.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        decoder = SaliencyDecoder()
    save_checkpoint(tmp_path / "decoder.pt", {"model": decoder.state_dict(), "config": {
        "weighting": "tanh", "coefficients": list(weighting_coefficients("tanh")),
        "trunk": TORCHVISION_RANDOM, "store_format_version": FORMAT_VERSION}})
    result = CliRunner().invoke(cli_main, ["predict", str(store), str(tmp_path / "decoder.pt"), str(tmp_path / "out")])
    assert result.exit_code == 2 and "another trunk" in result.output
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_naming_only_the_preset_takes_any_keras_weights_file(vgg_h5, vgg_trunk):
    store = vgg_trunk.fingerprint
    imported = trunk_fingerprint(KERAS_PRESET, None, None)  # what a Keras import knows of its trunk
    assert fingerprint_mismatch(imported, store) is None
    assert "preset" in fingerprint_mismatch(trunk_fingerprint("torchvision", None, None), store)
    assert "preset" in fingerprint_mismatch(imported, TORCHVISION_RANDOM)
    # its weights must be named: they are the user's copy of Keras' file
    with pytest.raises(TrunkWeightsError, match="pass --weights"):
        weights_for(imported, None)
    assert weights_for(imported, str(vgg_h5)) == str(vgg_h5)
