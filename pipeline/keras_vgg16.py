"""Keras' VGG16 weights file (``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``, Keras 2 HDF5
layout) loaded into torchvision's VGG-16 ``features``, read with h5py (`pipeline.keras_h5`).

The file's layers that hold weights are taken in the file's order, never by name: the first 13 are
VGG-16's convolutions, block1_conv1 .. block5_conv3 (a file with the top also holds fc1, fc2 and
predictions after them: they are not used). Each holds a kernel (kh, kw, in, out), channels-last as
Keras stores it, and a bias (out,); torch wants (out, in, kh, kw): a transpose, with no flip (Keras
and torch both compute a cross-correlation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.keras_h5 import read_layer_weights

#: How Keras names VGG-16's convolutions, in order: for messages only (layers are matched by order).
KERAS_VGG16_CONVS = tuple(f"block{block}_conv{conv}" for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
                          for conv in range(1, convs + 1))


class KerasWeightsError(Sal3dError):
    """A Keras weights file that does not hold VGG-16's convolutions; the message names the file,
    the layer and both shapes."""


def keras_kernel_to_torch(kernel: np.ndarray) -> np.ndarray:
    """A Keras Conv2D kernel (kh, kw, in, out) -> torch Conv2d weight (out, in, kh, kw)."""
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))


def load_keras_vgg16(path: Path | str, features: torch.nn.Sequential) -> None:
    """Copy the 13 convolutions of Keras' VGG16 weights file at `path` into torchvision's VGG-16
    `features` (its Conv2d layers, in order), in place. KerasWeightsError names the file and the
    layer that is missing or has a shape VGG-16 does not (`pipeline.keras_h5.KerasFileError` for a
    file that is not a readable Keras HDF5 file at all)."""
    convs = [layer for layer in features if isinstance(layer, torch.nn.Conv2d)]
    layers = read_layer_weights(path)
    if len(layers) < len(convs):
        missing = KERAS_VGG16_CONVS[len(layers)]
        raise KerasWeightsError(f"{path}: holds {len(layers)} layers with weights, VGG-16's trunk needs "
                                f"{len(convs)} convolutions ({', '.join(KERAS_VGG16_CONVS)}): the one for "
                                f"{missing} and after are missing")
    for index, (conv, layer) in enumerate(zip(convs, layers)):
        role = f"layer {layer.name!r} (VGG-16's {KERAS_VGG16_CONVS[index]}, layer {index + 1} of {len(convs)})"
        if len(layer.arrays) != 2:
            raise KerasWeightsError(f"{path}: {role} holds {len(layer.arrays)} arrays "
                                    f"({', '.join(layer.weight_names)}); a convolution has a kernel and a bias")
        kernel, bias = layer.arrays
        out_channels, in_channels, kh, kw = conv.weight.shape
        for what, found, expected in (("kernel", kernel.shape, (kh, kw, in_channels, out_channels)),
                                      ("bias", bias.shape, (out_channels,))):
            if tuple(found) != expected:
                raise KerasWeightsError(f"{path}: {role} {what} has shape {tuple(found)}, VGG-16 needs {expected}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(keras_kernel_to_torch(np.asarray(kernel, dtype=np.float32))))
            conv.bias.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))
