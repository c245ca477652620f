"""Keras HDF5 files read with h5py, as Keras' own legacy loader reads them (no Keras at run time).

Two kinds of file, both in the HDF5 layout of Keras 2 (which Keras 3 still writes for ``model.save(
"x.h5")``):

- a weights file (``save_weights("x.h5")`` in Keras 2, e.g. Keras' VGG16 no-top weights): the root's
  ``layer_names`` attribute lists the layers in order; each layer's group lists its arrays, in order,
  in its ``weight_names`` attribute;
- a full model (``ModelCheckpoint`` / ``model.save``): the same under the group ``model_weights``, and
  the architecture as JSON in the root's ``model_config`` attribute.

Weights are found by each layer's ``weight_names`` order, never by a guessed name: the names differ
across versions (``conv3D_1_1/kernel:0`` in Keras 2, ``sequential/conv3D_1_1/kernel`` in Keras 3's
legacy save, ``block1_conv1_W_1:0`` in Keras' older VGG16 file).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sal3d.pipeline.errors import Sal3dError


class KerasFileError(Sal3dError):
    """A Keras HDF5 file that cannot be read as one; the message names the file and the problem."""


@dataclass(frozen=True)
class KerasLayerWeights:
    """One layer's weights as the file stores them: `name`, and `arrays` in ``weight_names`` order
    (a Conv kernel is channels-last, e.g. Conv3D ``(kd, kh, kw, in, out)``), `weight_names` the names."""

    name: str
    arrays: tuple[np.ndarray, ...]
    weight_names: tuple[str, ...]


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _open(path: Path | str):
    import h5py  # imported here: only the Keras import and the Keras trunk preset need it

    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise KerasFileError(f"{path}: no such file") from None
    except OSError as error:  # h5py: truncated or not HDF5 at all
        raise KerasFileError(f"{path}: cannot read as a Keras HDF5 file ({str(error).splitlines()[0]})") from None


def read_layer_weights(path: Path | str) -> list[KerasLayerWeights]:
    """Every layer of a Keras weights file or full-model file that has weights, in the file's layer
    order. KerasFileError names the file and what is missing or unreadable."""
    with _open(path) as handle:
        group = handle["model_weights"] if "model_weights" in handle else handle
        if "layer_names" not in group.attrs:
            raise KerasFileError(f"{path}: not a Keras HDF5 weights file (no layer_names attribute)")
        layers = []
        for raw_name in group.attrs["layer_names"]:
            name = _text(raw_name)
            if name not in group:
                raise KerasFileError(f"{path}: layer {name!r} is listed but its group is missing")
            names = tuple(_text(n) for n in group[name].attrs.get("weight_names", []))
            if not names:
                continue
            try:
                arrays = tuple(np.asarray(group[name][n]) for n in names)
            except (KeyError, OSError) as error:
                raise KerasFileError(f"{path}: cannot read the weights of layer {name!r} ({error})") from None
            layers.append(KerasLayerWeights(name, arrays, names))
        return layers


def read_model_config(path: Path | str) -> dict | list:
    """The architecture a full-model file records (its ``model_config`` JSON: a dict with
    ``class_name`` and ``config``; some Keras 2 releases wrote a Sequential's config as a bare list of
    layers). KerasFileError when the file has none (a weights-only file) or it is not JSON."""
    with _open(path) as handle:
        raw = handle.attrs.get("model_config")
        if raw is None:
            raise KerasFileError(f"{path}: holds no model_config: a weights-only file, not a full Keras model")
        try:
            return json.loads(_text(raw))
        except json.JSONDecodeError as error:
            raise KerasFileError(f"{path}: its model_config is not valid JSON ({error})") from None
