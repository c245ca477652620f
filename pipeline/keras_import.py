"""`sal3d import-keras`: the authors' published Keras model (their ``cnn_network()`` saved as a full-model
HDF5) as a sal3d decoder checkpoint.

The file's ``model_config`` gives the layers in order, its ``model_weights`` their arrays
(`pipeline.keras_h5`, read by each layer's ``weight_names`` order as Keras' own loader reads them).
Each Keras layer is mapped onto `SaliencyDecoder` by order and type -- Conv3D, Conv3DTranspose,
MaxPooling3D, BatchNormalization -- and every hyper-parameter that shapes the computation (filters,
kernel, strides, padding, activation, pool size) and every array's shape is checked; a file that
does not fit is refused with the first layer that differs and both shapes. Nothing is guessed from
layer names.

Layouts: a Keras Conv3D kernel ``(kd, kh, kw, in, out)`` becomes torch's ``(out, in, kd, kh, kw)``; a
Conv3DTranspose kernel ``(kd, kh, kw, out, in)`` becomes torch ConvTranspose3d's ``(in, out, kd, kh, kw)``:
both ``transpose(4, 3, 0, 1, 2)``, with no spatial flip. BatchNormalization's gamma, beta, moving
mean and moving variance become weight, bias, running_mean and running_var.

The checkpoint records what makes sal3d compute the authors' network: Keras' BatchNorm epsilon and
momentum, the transposed convs' TensorFlow crop (``decoder.transposed_crop = "end"``), the linear
weighting and the authors' window rule (``window_rule = "authors"``), and the keras-3dsal trunk
preset whose features the model takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sal3d.pipeline.checkpoint import check_decoder_weights, save_checkpoint
from sal3d.pipeline.decoder import INPUT_SHAPE, SaliencyDecoder, SameConvTranspose3d, layer_output_shape
from sal3d.pipeline.identity import file_sha256
from sal3d.pipeline.keras_h5 import KerasFileError, read_layer_weights, read_model_config
from sal3d.pipeline.windows import weighting_coefficients

__all__ = ["KerasModelMismatch", "KERAS_WEIGHTING", "KERAS_WINDOW_RULE", "decoder_slots", "import_keras",
           "keras_checkpoint", "model_layers"]

#: The authors' published model weights its windows linearly, by their window rule.
KERAS_WEIGHTING = "linear"
KERAS_WINDOW_RULE = "authors"
_KERNEL_TO_TORCH = (4, 3, 0, 1, 2)  # Keras (kd, kh, kw, a, b) -> torch (b, a, kd, kh, kw)
_BATCHNORM_ARRAYS = ("weight", "bias", "running_mean", "running_var")  # gamma, beta, moving mean, variance


class KerasModelMismatch(KerasFileError):
    """A Keras model that is not the authors' decoder; the message names the file, the first layer
    that differs and what sal3d's decoder has there."""


@dataclass(frozen=True)
class KerasLayer:
    """One layer of a model_config: its class name, its name and its config dict."""

    kind: str
    name: str
    config: dict


@dataclass(frozen=True)
class DecoderSlot:
    """One layer of `SaliencyDecoder` as Keras would have it: `kind` (Keras class name), `key` (the
    state_dict prefix, e.g. ``block2.0``), `module`, `activation` (of a conv: relu or sigmoid), and
    `output` the shape after it, channels-last ``(T, H, W, C)``."""

    kind: str
    key: str
    module: nn.Module
    activation: str | None
    output: tuple[int, int, int, int]


def decoder_slots() -> list[DecoderSlot]:
    """`SaliencyDecoder`'s layers in forward order, as the Keras layers that compute them (ReLU and
    Sigmoid are the activations of the conv before them)."""
    with torch.device("meta"):
        model = SaliencyDecoder(transposed_crop="end")
    kinds = {nn.Conv3d: "Conv3D", SameConvTranspose3d: "Conv3DTranspose", nn.MaxPool3d: "MaxPooling3D",
             nn.BatchNorm3d: "BatchNormalization"}
    slots: list[DecoderSlot] = []
    shape: tuple[int, ...] = INPUT_SHAPE
    for stage in model.STAGES:
        for index, module in enumerate(getattr(model, stage)):
            shape = layer_output_shape(module, shape)
            if isinstance(module, (nn.ReLU, nn.Sigmoid)):
                last = slots[-1]
                slots[-1] = DecoderSlot(last.kind, last.key, last.module, type(module).__name__.lower(), last.output)
                continue
            c, t, h, w = shape
            slots.append(DecoderSlot(kinds[type(module)], f"{stage}.{index}", module, None, (t, h, w, c)))
    return slots


def model_layers(path: Path | str) -> tuple[tuple, list[KerasLayer]]:
    """(input shape without the batch, layers but the InputLayer, in order) of a full-model file's
    model_config: Keras 2's ``{"class_name": "Sequential", "config": {"layers": [...]}}`` (the first
    layer with ``batch_input_shape``) or the bare list of layers some Keras 2 releases wrote, Keras 3's
    with an ``InputLayer`` holding ``batch_shape``, or a functional model's layer list."""
    config = read_model_config(path)
    inner = config.get("config", config) if isinstance(config, dict) else config
    raw = inner.get("layers") if isinstance(inner, dict) else inner
    if not isinstance(raw, list) or not all(isinstance(x, dict) and isinstance(x.get("config"), dict) for x in raw):
        raise KerasFileError(f"{path}: its model_config lists no layers (not a Sequential or functional model)")
    input_shape = None
    layers = []
    for entry in raw:
        settings = entry["config"]
        shape = settings.get("batch_input_shape", settings.get("batch_shape"))
        if shape is not None and input_shape is None:
            input_shape = tuple(shape[1:])
        if entry.get("class_name") != "InputLayer":
            layers.append(KerasLayer(str(entry.get("class_name")), str(settings.get("name")), settings))
    if input_shape is None and isinstance(inner, dict) and inner.get("build_input_shape"):
        input_shape = tuple(inner["build_input_shape"][1:])
    return input_shape, layers


def _triple(value) -> tuple | None:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * 3 if isinstance(value, int) else None


def _layer_problem(layer: KerasLayer, slot: DecoderSlot, shape_in: tuple[int, ...]) -> str | None:
    """What of `layer`'s config differs from `slot`, in words; None when it computes the same on
    input of shape `shape_in` (channels-last)."""
    if layer.kind != slot.kind:
        return f"is a {layer.kind}, sal3d's decoder has a {slot.kind} there"
    cfg, module = layer.config, slot.module
    if cfg.get("data_format", "channels_last") != "channels_last":
        return f"is {cfg.get('data_format')}, not channels_last"
    if layer.kind == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, 4) or cfg.get("center", True) is not True or cfg.get("scale", True) is not True:
            return "is not a per-channel BatchNormalization with gamma and beta (axis -1, center, scale)"
        return None
    if layer.kind == "MaxPooling3D":
        size, strides = _triple(cfg.get("pool_size")), _triple(cfg.get("strides") or cfg.get("pool_size"))
        padding = str(cfg.get("padding", "valid")).lower()
        if size != tuple(module.kernel_size) or padding != "valid" or strides is None:
            return f"pools {size} with padding {padding!r}, sal3d's decoder {tuple(module.kernel_size)} 'valid'"
        # The authors' second pool strides (1, 1, 1) over 3 frames, sal3d's (3, 1, 1): one output either
        # way, so the output shape decides.
        output = (*((n - k) // s + 1 for n, k, s in zip(shape_in, size, strides)), shape_in[3])
        if output != slot.output:
            return f"pools to {output}, sal3d's decoder to {slot.output}"
        return None
    wanted = {"filters": module.out_channels, "kernel_size": tuple(module.kernel_size),
              "strides": tuple(module.stride), "padding": "same", "activation": slot.activation,
              "dilation_rate": (1, 1, 1)}
    found = {"filters": cfg.get("filters"), "kernel_size": _triple(cfg.get("kernel_size")),
             "strides": _triple(cfg.get("strides", 1)), "padding": str(cfg.get("padding")).lower(),
             "activation": cfg.get("activation"), "dilation_rate": _triple(cfg.get("dilation_rate", 1))}
    differing = [k for k in wanted if found[k] != wanted[k]]
    if differing:
        return "; ".join(f"{k} {found[k]!r}, sal3d's decoder {wanted[k]!r}" for k in differing)
    if not cfg.get("use_bias", True) or cfg.get("groups", 1) != 1 or cfg.get("output_padding") not in (None, [0, 0, 0]):
        return "has no bias, groups or an output_padding; sal3d's decoder has a bias, one group, no output_padding"
    return None


def _keras_shapes(slot: DecoderSlot) -> list[tuple[int, ...]]:
    """The shapes of `slot`'s arrays as a Keras file holds them, in weight_names order."""
    module = slot.module
    if slot.kind == "BatchNormalization":
        return [(module.num_features,)] * 4
    if slot.kind == "MaxPooling3D":
        return []
    return [tuple(module.weight.shape[i] for i in (2, 3, 4, 1, 0)), (module.out_channels,)]


def _check_input(path, input_shape) -> None:
    wanted = (INPUT_SHAPE[1], INPUT_SHAPE[2], INPUT_SHAPE[3], INPUT_SHAPE[0])  # channels-last (T, H, W, C)
    if input_shape is not None and tuple(input_shape) != wanted:
        raise KerasModelMismatch(f"{path}: the model takes input {tuple(input_shape)}, sal3d's decoder {wanted} "
                                 "(6 frames of 14x14x512 VGG-16 features)")


def _match_layers(path, layers: list[KerasLayer], slots: list[DecoderSlot]) -> None:
    """KerasModelMismatch naming the first Keras layer that differs from sal3d's decoder."""
    shape = (INPUT_SHAPE[1], INPUT_SHAPE[2], INPUT_SHAPE[3], INPUT_SHAPE[0])  # channels-last (T, H, W, C)
    for number, (layer, slot) in enumerate(zip(layers, slots), start=1):
        problem = _layer_problem(layer, slot, shape)
        if problem:
            raise KerasModelMismatch(f"{path}: layer {number} {layer.name!r} {problem}")
        shape = slot.output
    if len(layers) > len(slots):
        extra = layers[len(slots)]
        raise KerasModelMismatch(f"{path}: layer {len(slots) + 1} {extra.name!r} ({extra.kind}) is one more than "
                                 f"sal3d's decoder has ({len(slots)} layers, ending with a sigmoid Conv3D)")
    if len(layers) < len(slots):
        raise KerasModelMismatch(f"{path}: the model ends after {len(layers)} layers; sal3d's decoder goes on with "
                                 f"a {slots[len(layers)].kind} (it has {len(slots)})")


def _state_dict(path, layers: list[KerasLayer], slots: list[DecoderSlot]) -> tuple[dict, dict]:
    """(the decoder's state_dict, the BatchNorm settings {bn_eps, bn_momentum}) from the file's arrays,
    matched to the layers that have weights by order; KerasModelMismatch at the first shape that differs."""
    weighted = [(layer, slot) for layer, slot in zip(layers, slots) if slot.kind != "MaxPooling3D"]
    stored = read_layer_weights(path)
    if len(stored) != len(weighted):
        raise KerasModelMismatch(f"{path}: holds the weights of {len(stored)} layers, its model_config has "
                                 f"{len(weighted)} layers with weights")
    state, settings = {}, set()
    for (layer, slot), weights in zip(weighted, stored):
        found = [tuple(a.shape) for a in weights.arrays]
        wanted = _keras_shapes(slot)
        if found != wanted:
            raise KerasModelMismatch(f"{path}: layer {layer.name!r} ({layer.kind}) holds arrays {found}, sal3d's "
                                     f"decoder needs {wanted} there ({slot.key})")
        arrays = [torch.from_numpy(np.array(a, dtype=np.float32)) for a in weights.arrays]
        if slot.kind == "BatchNormalization":
            state.update({f"{slot.key}.{name}": a for name, a in zip(_BATCHNORM_ARRAYS, arrays)})
            state[f"{slot.key}.num_batches_tracked"] = torch.tensor(0)
            settings.add((float(layer.config.get("epsilon", 1e-3)), 1.0 - float(layer.config.get("momentum", 0.99))))
        else:
            state[f"{slot.key}.weight"] = arrays[0].permute(*_KERNEL_TO_TORCH).contiguous()
            state[f"{slot.key}.bias"] = arrays[1]
    if len(settings) != 1:
        raise KerasModelMismatch(f"{path}: its BatchNormalization layers differ in epsilon or momentum "
                                 f"({sorted(settings)}); sal3d's decoder has one setting for all")
    (eps, momentum), = settings
    return check_decoder_weights(path, state), {"bn_momentum": momentum, "bn_eps": eps}


def imported_trunk() -> dict:
    """The trunk fingerprint an imported checkpoint records: the keras-3dsal preset's, with the weights
    left unnamed (None: not compared), so that it runs with the Keras VGG16 file the user passes."""
    from sal3d.pipeline.trunk import KERAS_PRESET, trunk_fingerprint

    return trunk_fingerprint(KERAS_PRESET, None, None)


def keras_checkpoint(path: Path | str) -> dict:
    """The sal3d checkpoint of the Keras full-model file `path` (see the module's docstring):
    {"model": the decoder's state_dict, "config": {...}}. KerasFileError (KerasModelMismatch when the
    model is not the authors' decoder) names the file and the first problem."""
    path = Path(path)
    input_shape, layers = model_layers(path)
    _check_input(path, input_shape)
    slots = decoder_slots()
    _match_layers(path, layers, slots)
    state, batchnorm = _state_dict(path, layers, slots)
    from sal3d.pipeline.store import FORMAT_VERSION  # features read as every store of this format holds them

    return {"model": state, "config": {
        "weighting": KERAS_WEIGHTING,
        "coefficients": list(weighting_coefficients(KERAS_WEIGHTING)),
        "window_rule": KERAS_WINDOW_RULE,
        "trunk": imported_trunk(),
        "store_format_version": FORMAT_VERSION,
        "decoder": {**batchnorm, "transposed_crop": "end"},
        "epoch": None,
        "validation": None,
        "imported": {"keras_file": path.name, "sha256": file_sha256(path), "layers": [x.name for x in layers]},
    }}


def import_keras(model: Path | str, checkpoint: Path | str) -> dict:
    """Write the sal3d checkpoint of the Keras full-model file `model` to `checkpoint` (atomically);
    returns its config."""
    converted = keras_checkpoint(model)
    save_checkpoint(checkpoint, converted)
    return converted["config"]
