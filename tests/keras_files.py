"""Keras HDF5 files in Keras 2's layout, written with h5py (the tests have no Keras 2): what the authors'
2019 ``ModelCheckpoint`` file and Keras' own VGG16 weights file look like, with any layers and arrays;
the authors' decoder and feature model restated in Keras 3 (torch backend), with random weights; and
`authors_files`, those files generated once per test session and shared by the tests that need them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

#: One layer: its name and its arrays as (weight name, array), in the order Keras lists them
#: (``conv3D_1_1/kernel:0``, ``conv3D_1_1/bias:0``); a layer without weights has none.
Layer = tuple[str, Sequence[tuple[str, np.ndarray]]]


def write_layers(group: h5py.Group, layers: Sequence[Layer], keras_version: str = "2.2.4") -> None:
    """Write `layers` into `group` as Keras 2's ``save_weights`` does: the group's ``layer_names``,
    ``backend`` and ``keras_version`` attributes; one subgroup per layer with its ``weight_names``; each
    array at ``<layer>/<weight name>`` (a name with a slash makes nested groups, as Keras' did)."""
    group.attrs["layer_names"] = np.array([name.encode() for name, _ in layers])
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = keras_version.encode()
    for name, weights in layers:
        layer = group.create_group(name)
        layer.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
        for weight_name, array in weights:
            layer.create_dataset(weight_name, data=np.asarray(array))


def write_keras2_model(path: Path | str, model_config: dict | list, layers: Sequence[Layer]) -> Path:
    """A Keras 2 full-model HDF5 (``model.save`` / ``ModelCheckpoint(save_weights_only=False)``) at
    `path`: the root's ``model_config`` JSON (`model_config` as given: a Sequential's dict or a bare
    list of layers), and `layers` under ``model_weights`` (`write_layers`). Returns the path."""
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(model_config).encode()
        handle.attrs["keras_version"] = b"2.2.4"
        handle.attrs["backend"] = b"tensorflow"
        write_layers(handle.create_group("model_weights"), layers)
    return Path(path)


#: The weight names Keras 2 gives a layer's arrays, by how many it has (Conv: kernel, bias;
#: BatchNormalization: gamma, beta, moving mean, moving variance).
KERAS2_WEIGHT_NAMES = {1: ("kernel",), 2: ("kernel", "bias"), 4: ("gamma", "beta", "moving_mean", "moving_variance")}


def write_keras2_weights(path: Path | str, layers: Sequence[tuple[str, Sequence]]) -> Path:
    """A Keras 2 weights file (``save_weights("x.h5")``, e.g. Keras' VGG16 no-top weights file) at
    `path`: `layers`, [(layer name, [array or (weight name, array), ...]), ...] in order, at the root
    (`write_layers`). A bare array is named as Keras 2 names it, ``<layer>/<kernel|bias|...>:0``
    (`KERAS2_WEIGHT_NAMES`); give (name, array) pairs for others, e.g. the older ``block1_conv1_W_1:0``.
    Returns the path."""
    named = []
    for name, weights in layers:
        defaults = KERAS2_WEIGHT_NAMES.get(len(weights), ())
        named.append((name, [w if isinstance(w, tuple) else (f"{name}/{defaults[i]}:0", w) for i, w in enumerate(weights)]))
    with h5py.File(path, "w") as handle:
        write_layers(handle, named)
    return Path(path)


# ---------------------------------------------------------------------------- VGG16 no-top weights

#: VGG-16's convolutions, (in, out) channels, in order; a pooling layer (no weights) ends each block.
VGG16_CHANNELS = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
                  (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]
VGG16_BLOCK_ENDS = {"block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3", "block5_conv3"}


def he_normal_convs(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random (kernel (3, 3, in, out), bias (out,)) per VGG-16 convolution: He-normal kernels, so
    activations keep their scale through the 13 layers, and random biases, so features are far from
    constant."""
    rng = np.random.default_rng(seed)
    return [(rng.normal(0, np.sqrt(2 / (9 * cin)), (3, 3, cin, cout)).astype(np.float32),
             rng.normal(0, 0.5, cout).astype(np.float32)) for cin, cout in VGG16_CHANNELS]


def vgg16_layers(convs: list, names=None) -> list[tuple[str, list]]:
    """VGG16 no-top's layers as Keras lists them (input, convolutions, pools) with `convs`' arrays;
    `names(layer)` gives the arrays' weight names (default: Keras 2's ``<layer>/kernel:0``)."""
    from sal3d.pipeline.keras_vgg16 import KERAS_VGG16_CONVS

    layers = [("input_1", [])]
    for name, arrays in zip(KERAS_VGG16_CONVS, convs):
        layers.append((name, list(arrays) if names is None else list(zip(names(name), arrays))))
        if name in VGG16_BLOCK_ENDS:
            layers.append((f"{name.split('_')[0]}_pool", []))
    return layers


# ---------------------------------------------------------------------------- the authors' decoder

K3, K133 = (3, 3, 3), (1, 3, 3)
#: The authors' cnn_network() (their Model.py), layer by layer: (Keras class, name, filters, kernel,
#: activation) for the convolutions, (class, pool size, strides) for the pools, (class,) for BatchNorm.
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
#: The decoder's input: one window, channels last (6 frames, 14, 14, 512).
INPUT = (6, 14, 14, 512)
#: The authors' weights of a window's six frames, oldest first, for frames from 6 on.
AUTHORS_COEFFICIENTS = (0.4, 0.5, 0.6, 0.7, 0.8, 1.0)


def authors_window(features: np.ndarray, i: int) -> np.ndarray:
    """Frame i's window as the authors' Batch_Creation (Prep_Data.py) builds it, restated from their
    code: `features` (T, ...) -> (6, ...). Frames 0-5 by their own rows, unweighted; from 6 on, frames
    i-5 .. i weighted 0.4 ... 0.8, 1."""
    x = features
    rows = {0: (0, 0, 0, 0, 0, 0), 1: (0, 0, 1, 1, 1, 1), 2: (0, 1, 1, 2, 2, 2), 3: (0, 1, 2, 3, 3, 3),
            4: (0, 1, 2, 3, 4, 4), 5: (0, 1, 2, 3, 4, 5)}
    if i in rows:
        return np.stack([x[j] for j in rows[i]])
    return np.stack([c * x[i - 5 + k] for k, c in enumerate(AUTHORS_COEFFICIENTS)])


def keras2_config(bare_list: bool = False, layers=AUTHORS_LAYERS) -> dict | list:
    """The model_config Keras 2 wrote for the authors' model (first layer with batch_input_shape); with
    `bare_list`, the bare list of layers some Keras 2 releases wrote for a Sequential."""
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


def keras2_weights(model) -> list[Layer]:
    """A Keras model's weights as Keras 2 named them: [(layer name, [("conv3D_1_1/kernel:0", array), ...])]."""
    names = {2: ("kernel", "bias"), 4: ("gamma", "beta", "moving_mean", "moving_variance")}
    layers = []
    for number, layer in enumerate(model.layers):
        arrays = layer.get_weights()
        name = layer.name if arrays and len(arrays) == 2 else (
            f"batch_normalization_{number}" if arrays else f"max_pooling3d_{number}")
        layers.append((name, [(f"{name}/{w}:0", a) for w, a in zip(names.get(len(arrays), ()), arrays)]))
    return layers


# ---------------------------------------------------------------------------- Keras reference models


def keras_or_skip():
    """Keras 3 on the torch backend (the test extra), or a skip."""
    import os

    import pytest

    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def _decoder_layer(keras, spec, seed):
    kind, layers = spec[0], keras.layers
    if kind == "MaxPooling3D":
        return layers.MaxPooling3D(spec[1], strides=spec[2])
    if kind == "BatchNormalization":
        return layers.BatchNormalization()
    cls = layers.Conv3D if kind == "Conv3D" else layers.Conv3DTranspose
    strides = (1, 1, 1) if kind == "Conv3D" else (1, 2, 2)
    return cls(spec[2], spec[3], strides=strides, padding="same", activation=spec[4], name=spec[1],
               kernel_initializer=keras.initializers.HeNormal(seed=seed))


def authors_keras_decoder(keras, window: np.ndarray | None = None, seed: int = 0):
    """The authors' cnn_network() in Keras with random weights that keep its maps far from constant:
    He-normal kernels, random biases, each BatchNorm's statistics measured on its input then perturbed,
    gamma and beta random. `window` (1, 6, 14, 14, 512), what the statistics are measured on: features
    like those the decoder will see, as a trained model's are (default: uniform in 0..2)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(INPUT)] + [_decoder_layer(keras, s, n) for n, s in enumerate(AUTHORS_LAYERS)])
    rng = np.random.default_rng(seed)
    if window is None:
        window = rng.random((1, *INPUT), dtype=np.float32) * 2
    x = keras.ops.convert_to_tensor(window.astype(np.float32))
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
    return model


def keras_decoder_maps(model, windows: np.ndarray) -> np.ndarray:
    """Keras' output on windows (N, 6, 14, 14, 512): (N, 224, 224)."""
    import keras

    return keras.ops.convert_to_numpy(model(windows.astype(np.float32), training=False))[:, 0, :, :, 0]


def keras_feature_model(keras, convs: list):
    """The authors' feature model (Prep_Data.py) in Keras: VGG16 no-top with `convs`' arrays
    (`he_normal_convs`), cut after block5_conv3 (its ReLU), then an untrained BatchNormalization.
    (N, 224, 224, 3) float BGR 0..255 -> (N, 14, 14, 512)."""
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    for layer, arrays in zip([layer for layer in vgg.layers if layer.weights], convs):
        layer.set_weights(list(arrays))
    block5_conv3 = vgg.get_layer("block5_conv3").output
    return keras.Model(vgg.input, keras.layers.BatchNormalization()(block5_conv3))


# ---------------------------------------------------------------------------- built once per session

@dataclass(frozen=True)
class AuthorsFiles:
    """The generated stand-ins of the published files, shared read-only by the tests of a session.

    decoder: the authors' decoder in Keras (`authors_keras_decoder`, its BatchNorm statistics measured
    on `window`). decoder_h5: it as their Keras 2 full-model file (``3DSal-weighted.hdf5``).
    checkpoint: that file through ``import_keras``. vgg16_h5: Keras' VGG16 no-top weights file layout
    with ``he_normal_convs(0)`` (written without Keras). window: (1, 6, 14, 14, 512) float32, the
    window of frame 1 of two generated frames through that trunk, as the authors' loader builds it.
    """

    decoder: object
    decoder_h5: Path
    checkpoint: Path
    vgg16_h5: Path
    window: np.ndarray


_SESSION: dict[str, object] = {}


def vgg16_h5(tmp_path_factory) -> Path:
    """The session's VGG16 no-top weights file (``he_normal_convs(0)``), written once."""
    if "vgg16_h5" not in _SESSION:
        path = tmp_path_factory.mktemp("keras_vgg16") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
        _SESSION["vgg16_h5"] = write_keras2_weights(path, vgg16_layers(he_normal_convs(0)))
    return _SESSION["vgg16_h5"]


def generated_window(vgg16: Path, seed: int = 0) -> np.ndarray:
    """Frame 1's window (the authors' rule) of two generated 224x224 frames (a disc over a texture,
    drawn from `seed`) through the keras-3dsal trunk loaded from `vgg16`: (1, 6, 14, 14, 512) float32,
    features of the scale real frames give."""
    import torch

    from sal3d.pipeline.sample import render_video
    from sal3d.pipeline.trunk import KERAS_PRESET, load_trunk

    frames = np.stack([frame for frame, _, _ in render_video(np.random.default_rng(seed), 224, 224, 2)])
    trunk = load_trunk(str(vgg16), KERAS_PRESET)
    with torch.inference_mode():
        features = trunk.module(trunk.preprocessing.normalize(torch.from_numpy(frames))).numpy()
    return authors_window(features.transpose(0, 2, 3, 1), 1)[None]


def authors_files(tmp_path_factory) -> AuthorsFiles:
    """The session's `AuthorsFiles`, built on first use (the decoder is 31M parameters: seconds to
    build, write and import), then reused by every test of every module. Skips without Keras."""
    keras = keras_or_skip()
    if "authors" not in _SESSION:
        from sal3d.pipeline.keras_import import import_keras

        vgg16 = vgg16_h5(tmp_path_factory)
        # A trained decoder's BatchNorm statistics are those of the trunk's features: measure them so.
        window = generated_window(vgg16)
        model = authors_keras_decoder(keras, window)
        directory = tmp_path_factory.mktemp("keras_authors")
        decoder_h5 = write_keras2_model(directory / "3DSal-weighted.hdf5", keras2_config(), keras2_weights(model))
        checkpoint = directory / "3dsal-weighted.pt"
        import_keras(decoder_h5, checkpoint)
        _SESSION["authors"] = AuthorsFiles(model, decoder_h5, checkpoint, vgg16, window)
    return _SESSION["authors"]
