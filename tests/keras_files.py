"""Keras HDF5 files in Keras 2's layout, written with h5py (the tests have no Keras 2): what the authors'
2019 ``ModelCheckpoint`` file and Keras' own VGG16 weights file look like, with any layers and arrays."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
