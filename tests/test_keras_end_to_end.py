"""The authors' published model end to end: the frames of a real clip through sal3d (the keras-3dsal
trunk preset from Keras' VGG16 weights file, the decoder that ``import-keras`` made of the authors'
Keras file) give the maps that the authors' pipeline, written with Keras layers, gives.

Both files are generated with random weights (tests/keras_files.py: He-normal kernels, random
BatchNorm statistics), so that the maps are far from constant. The Keras side follows the authors'
code: frames as uint8 BGR, ``cv2.resize`` to 224x224, VGG16 cut after block5_conv3 and an untrained
BatchNormalization (Prep_Data.py), their Batch_Creation windows with their weights, their cnn_network
(Model.py). Seven frames: frames 0 to 5 each have their own window, frame 6 is the first weighted one.

One step of sal3d's is added to the Keras side: the features are rounded to float16 between trunk and
decoder, as sal3d's feature cache (and `Predictor`, which gives what ``sal3d predict`` writes) holds
them. That rounding alone moves a map pixel by up to about 1e-2 with these random weights (on
average by about 2e-4), so without it the maps would agree to that, not to 1e-3; with it, they agree
to about 5e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sal3d
from sal3d.pipeline.device import CPU_DTYPE_VARIABLE
from sal3d.pipeline.ffmpeg import VideoEncoder

from keras_files import (AuthorsFiles, authors_files, authors_window, he_normal_convs, keras_decoder_maps,
                         keras_feature_model, keras_or_skip)

FRAMES = 7
TOLERANCE = 1e-3


@pytest.fixture(scope="session")
def authors(tmp_path_factory) -> AuthorsFiles:
    """The authors' decoder in Keras, its Keras 2 file and its import, and the VGG16 weights file
    (built once per session; skips without Keras)."""
    return authors_files(tmp_path_factory)


def real_clip(real_sample: Path, folder: Path) -> tuple[Path, np.ndarray]:
    """The first FRAMES frames of a real DHF1K video as a video file of their own, and its frames as
    decord decodes them at full size: (path, uint8 RGB (FRAMES, H, W, 3)). Both sides read that file."""
    import decord

    source = decord.VideoReader(str(real_sample / "video" / "300.AVI"), num_threads=1)
    first = source.get_batch(list(range(FRAMES))).asnumpy()
    clip = folder / "clip.mp4"
    with VideoEncoder(clip, first.shape[2], first.shape[1]) as video:
        for frame in first:
            video.write(frame)
    decoded = decord.VideoReader(str(clip), num_threads=1)
    assert len(decoded) == FRAMES
    return clip, decoded.get_batch(list(range(FRAMES))).asnumpy()


def authors_keras_maps(authors: AuthorsFiles, frames: np.ndarray, cache_float16: bool) -> np.ndarray:
    """The authors' pipeline in Keras on uint8 RGB frames (T, H, W, 3) at full size: (T, 224, 224).
    With `cache_float16`, the features are rounded to float16 between trunk and decoder, as sal3d's
    feature cache holds them."""
    cv2 = pytest.importorskip("cv2")
    keras = keras_or_skip()
    # Prep_Data.py: the BGR uint8 frame, cv2.resize (default bilinear) on uint8, then float 0..255.
    resized = np.stack([cv2.resize(np.ascontiguousarray(frame[..., ::-1]), (224, 224)) for frame in frames])
    features = keras_feature_model(keras, he_normal_convs(0)).predict(resized.astype(np.float32), verbose=0)
    if cache_float16:
        features = features.astype(np.float16).astype(np.float32)
    windows = np.stack([authors_window(features, i) for i in range(len(frames))])  # (T, 6, 14, 14, 512)
    return keras_decoder_maps(authors.decoder, windows)


@pytest.mark.slow
def test_a_real_clip_through_sal3d_equals_the_authors_keras_pipeline(authors, real_sample, tmp_path, monkeypatch):
    monkeypatch.setenv(CPU_DTYPE_VARIABLE, "float32")  # bf16 CPUs would otherwise run the trunk in bf16
    clip, frames = real_clip(real_sample, tmp_path)
    expected = authors_keras_maps(authors, frames, cache_float16=True)
    assert expected.shape == (FRAMES, 224, 224)
    assert (expected.std(axis=(1, 2)) > 0.05).all()  # every map far from constant

    predictor = sal3d.load(authors.checkpoint, weights=str(authors.vgg16_h5), device="cpu", size="224",
                           rescale=False)
    maps = np.stack(list(predictor.predict_video(clip)))
    assert maps.shape == expected.shape
    difference = np.abs(maps - expected).max(axis=(1, 2))
    print("max |sal3d - Keras| per map:", " ".join(f"{d:.1e}" for d in difference))
    assert (difference < TOLERANCE).all(), difference
    # The maps differ from frame to frame: a window built from the wrong frames would show.
    assert min(np.abs(expected[i + 1] - expected[i]).max() for i in range(FRAMES - 1)) > 10 * TOLERANCE
