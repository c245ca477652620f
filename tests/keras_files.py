"""Writers of Keras HDF5 files for the tests, with h5py: the layout Keras 2 writes, so that a test
needs no Keras 2 (nor TensorFlow) to make the files the authors and Keras published."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

#: The weight names Keras 2 gives a layer's arrays, by how many it has (Conv: kernel, bias;
#: BatchNormalization: gamma, beta, moving mean, moving variance).
KERAS2_WEIGHT_NAMES = {1: ("kernel",), 2: ("kernel", "bias"), 4: ("gamma", "beta", "moving_mean", "moving_variance")}


def write_keras2_weights(target: Path | str | h5py.Group, layers: list[tuple[str, list]]) -> None:
    """Write `layers`, [(layer name, [array or (weight name, array), ...]), ...] in order, in Keras 2's
    HDF5 weights layout: the attribute ``layer_names`` lists the layers; each layer's group lists its
    arrays in its ``weight_names`` attribute, each a dataset at that name inside the group.

    An array without a name is named as Keras 2 names it, ``<layer>/<kernel|bias|...>:0``
    (`KERAS2_WEIGHT_NAMES`); give (name, array) pairs for other names, e.g. the older
    ``block1_conv1_W_1:0``. A layer with no arrays (a pooling layer) gets an empty ``weight_names``.
    target: a file path (written anew: a weights file, as ``save_weights`` writes) or an open h5py
    group (e.g. a full-model file's ``model_weights``)."""
    if not isinstance(target, h5py.Group):
        with h5py.File(target, "w") as handle:
            write_keras2_weights(handle, layers)
        return
    target.attrs["layer_names"] = np.array([name.encode("utf8") for name, _ in layers])
    target.attrs["backend"] = b"tensorflow"
    target.attrs["keras_version"] = b"2.2.4"
    for name, weights in layers:
        group = target.create_group(name)
        defaults = KERAS2_WEIGHT_NAMES.get(len(weights), ())
        names = []
        for index, weight in enumerate(weights):
            if isinstance(weight, tuple):
                weight_name, array = weight
            else:
                weight_name, array = f"{name}/{defaults[index]}:0", weight
            group.create_dataset(weight_name, data=np.asarray(array))
            names.append(weight_name.encode("utf8"))
        group.attrs["weight_names"] = np.array(names, dtype="S") if names else np.array([], dtype="S1")
