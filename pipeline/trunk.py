"""The frozen VGG-16 trunk, up to relu5_3: (N, 3, 224, 224) -> (N, 512, 14, 14).

`load_trunk` builds it for a preset (`PRESETS`) from a weight source and returns a fingerprint that
identifies exactly which features it makes (preset, weights, preprocessing, input size); stores
record it, and later stages refuse a store or checkpoint made with another.

- ``torchvision`` (the default): torchvision's VGG-16 up to relu5_3 on ImageNet-normalized RGB;
  weights ``imagenet``, ``random`` (seeded; tests and demos) or a state_dict file.
- ``keras-3dsal``: the features of the 3DSal authors' published model: Keras' VGG16 weights file
  (`pipeline.keras_vgg16`) in the same network, up to block5_conv3 with its ReLU, then Keras'
  BatchNormalization as they left it, untrained (gamma 1, beta 0, mean 0, variance 1, epsilon
  1e-3: x / sqrt(1.001)), on BGR 0..255 frames resized by cv2 (`pipeline.preprocessing`); weights
  a Keras ``.h5`` file, or ``random``.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision

from sal3d.pipeline.choices import DEFAULT_TRUNK, KERAS_BATCHNORM, TRUNKS
from sal3d.pipeline.contract import FEATURE_SHAPE
from sal3d.pipeline.device import compute_dtype
from sal3d.pipeline.errors import Sal3dError
from sal3d.pipeline.preprocessing import PREPROCESSINGS, TORCHVISION, Preprocessing
from sal3d.pipeline.progress import say

RELU5_3 = 30  # vgg16().features[:30] ends with relu5_3
ARCH = "torchvision.models.vgg16().features[:30] (relu5_3)"
KERAS_PRESET = "keras-3dsal"
KERAS_ARCH = ("Keras VGG16 block1_conv1..block5_conv3 with its ReLU, as torchvision.models.vgg16().features[:30], "
              f"then Keras BatchNormalization untrained (x / sqrt(1 + {KERAS_BATCHNORM['bn_eps']}))")
#: The file the keras-3dsal preset wants: Keras' own VGG16 no-top weights (what keras.applications downloads).
KERAS_WEIGHTS_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
#: Trunk presets: name -> (arch, preprocessing); `pipeline.choices.TRUNKS` lists the names.
PRESETS = {"torchvision": (ARCH, TORCHVISION), KERAS_PRESET: (KERAS_ARCH, PREPROCESSINGS[KERAS_PRESET])}
RANDOM_SEED = 0
#: Frames per trunk batch when not given: extract's --batch-size default and the `Predictor`'s batch.
TRUNK_BATCH = 32
RANDOM_WARNING = ("sal3d: warning: TRUNK WEIGHTS ARE RANDOM (seeded): the features carry no ImageNet knowledge "
                  "and saliency learned from them is meaningless outside tests and demos. Use --weights imagenet.")
# False inside quiet_random_warning(): the caller has said it already.
_warn_random = contextvars.ContextVar("warn_random", default=True)


class TrunkWeightsError(Sal3dError):
    """The requested trunk weights cannot be loaded; the message says how to fix it."""


@dataclass
class Trunk:
    """The trunk module (eval mode, frozen), the fingerprint of the features it makes, and how its
    frames are prepared (its preset's `Preprocessing`)."""

    module: torch.nn.Sequential
    fingerprint: dict
    preprocessing: Preprocessing = TORCHVISION


def load_trunk(weights: str = "imagenet", preset: str = DEFAULT_TRUNK) -> Trunk:
    """preset: ``torchvision`` or ``keras-3dsal`` (see the module's docstring).
    weights: ``imagenet`` (torchvision's VGG16_Weights.IMAGENET1K_V1, from the TORCH_HOME cache or
    downloaded; torchvision preset only), ``random`` (seeded; for tests and demos only) or the path
    of a file: for torchvision a state_dict (a full VGG-16 one or one of ``features`` alone), for
    keras-3dsal Keras' VGG16 weights file (``.h5``)."""
    if preset not in PRESETS:
        raise TrunkWeightsError(f"unknown trunk preset {preset!r} (expected one of {', '.join(TRUNKS)})")
    arch, preprocessing = PRESETS[preset]
    preprocessing.check()
    if weights == "random":
        if _warn_random.get():
            say(RANDOM_WARNING)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            features, identity = torchvision.models.vgg16(weights=None).features, f"random:seed={RANDOM_SEED}"
    elif preset == KERAS_PRESET:
        features, identity = _keras_features(weights), f"keras-h5:{Path(weights).name}"
    elif weights == "imagenet":
        features, identity = _imagenet_vgg16().features, "imagenet:VGG16_Weights.IMAGENET1K_V1"
    else:
        features, identity = _file_vgg16(Path(weights)).features, f"file:{Path(weights).name}"
    module = features[:RELU5_3]
    if preset == KERAS_PRESET:
        # Keras' BatchNormalization as the authors left it: gamma 1, beta 0, mean 0, variance 1.
        module.append(torch.nn.BatchNorm2d(FEATURE_SHAPE[0], eps=KERAS_BATCHNORM["bn_eps"]))
    module = module.eval().requires_grad_(False)
    return Trunk(module, trunk_fingerprint(preset, identity, _state_sha256(module)), preprocessing)


def trunk_fingerprint(preset: str, weights: str | None, weights_sha256: str | None) -> dict:
    """The fingerprint of `preset`'s features with the weights named `weights` (``keras-h5:NAME``,
    ``random:seed=0``, ...) whose tensors digest to `weights_sha256`. The torchvision preset's has
    no ``preset`` field (stores made before presets existed match it). A checkpoint imported from
    Keras records None for the weights it cannot know (`pipeline.contract.fingerprint_mismatch`
    does not compare them), so that it runs with whichever Keras VGG16 file the user passes."""
    arch, preprocessing = PRESETS[preset]
    fingerprint = {} if preset == DEFAULT_TRUNK else {"preset": preset}
    fingerprint.update({
        "arch": arch,
        "weights": weights,
        "weights_sha256": weights_sha256,
        "preprocessing": preprocessing.description,
        "feature_shape": list(FEATURE_SHAPE),
    })
    return fingerprint


def preset_of(fingerprint: dict) -> str:
    """The trunk preset a fingerprint names (stores and checkpoints of the torchvision preset name none)."""
    return str(fingerprint.get("preset", DEFAULT_TRUNK))


def weights_for(trunk: dict, explicit: str | None) -> str:
    """The extract --weights value that rebuilds the trunk a checkpoint was trained with (its preset
    is `preset_of`)."""
    if explicit:
        return explicit
    identity = str(trunk.get("weights") or "")
    if preset_of(trunk) == KERAS_PRESET and identity != f"random:seed={RANDOM_SEED}":
        raise TrunkWeightsError(f"the checkpoint's trunk is the {KERAS_PRESET} preset: pass --weights with Keras' "
                                f"VGG16 weights file ({KERAS_WEIGHTS_FILE})")
    if identity.startswith("imagenet:"):
        return "imagenet"
    if identity == f"random:seed={RANDOM_SEED}":
        return "random"
    if identity.startswith("file:"):
        raise TrunkWeightsError(f"the checkpoint's trunk was loaded from a file ({identity}): pass --weights "
                           "with the path of that VGG-16 state_dict")
    raise TrunkWeightsError(f"cannot tell which trunk weights made the checkpoint's features ({identity!r}): "
                       "pass --weights")


def _imagenet_vgg16() -> torch.nn.Module:
    weights = torchvision.models.VGG16_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists():
        # Fail fast offline: urllib has no timeout of its own and would hang on a dead network.
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            weights.get_state_dict(progress=True)
        except Exception as error:
            raise TrunkWeightsError(
                f"cannot load VGG-16 ImageNet weights: {cached} is not cached and the download failed "
                f"({type(error).__name__}: {error}). Pre-seed the cache by copying {Path(weights.url).name} "
                f"to {cached.parent}/ (set TORCH_HOME to choose where), or pass --weights FILE with a "
                "local VGG-16 state_dict."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    return torchvision.models.vgg16(weights=weights)


def _keras_features(weights: str) -> torch.nn.Sequential:
    from sal3d.pipeline.keras_vgg16 import load_keras_vgg16  # imported here: h5py only for this preset

    if weights == "imagenet":
        raise TrunkWeightsError(f"the {KERAS_PRESET} trunk takes Keras' VGG16 weights file, not torchvision's "
                                f"ImageNet weights: pass --weights {KERAS_WEIGHTS_FILE} (its path)")
    if not Path(weights).is_file():
        raise TrunkWeightsError(f"{weights}: weights file not found (the {KERAS_PRESET} trunk takes Keras' "
                                f"VGG16 weights file, {KERAS_WEIGHTS_FILE}, or random)")
    # VGG-16's features alone: its classifier (fc6-fc8, 124M parameters) is never used, so not built
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    load_keras_vgg16(weights, features)
    return features


def _file_vgg16(path: Path) -> torch.nn.Module:
    if not path.is_file():
        raise TrunkWeightsError(f"{path}: weights file not found (expected imagenet, random or a file path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrunkWeightsError(f"{path}: not a loadable state_dict ({error})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    vgg = torchvision.models.vgg16(weights=None)
    features = {k.removeprefix("features."): v for k, v in state.items()
                if k.startswith("features.") or k.split(".")[0].isdigit()}
    try:
        vgg.features.load_state_dict(features, strict=True)
    except RuntimeError as error:
        raise TrunkWeightsError(f"{path}: does not hold VGG-16 conv weights ({str(error).splitlines()[0]})") from None
    return vgg


def _state_sha256(module: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TrunkRunner:
    """Runs the trunk on uint8 frame batches on one device, channels_last, in bf16 where it is fast.

    __call__: uint8 frames (N, 224, 224, 3) (numpy or torch) -> float16 numpy (N, 512, 14, 14).
    `submit` does the same without waiting for a GPU: the caller prepares the next batch meanwhile.
    """

    def __init__(self, trunk: Trunk, device: torch.device):
        self.device = device
        self.fingerprint = trunk.fingerprint
        self.preprocessing = trunk.preprocessing
        self.module = trunk.module.to(device).to(memory_format=torch.channels_last)
        self.dtype = compute_dtype(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def __call__(self, frames) -> np.ndarray:
        return self.submit(frames).result()

    @torch.inference_mode()
    def submit(self, frames) -> "TrunkBatch":
        """Starts the trunk on uint8 frames (N, 224, 224, 3); on a GPU it returns once the work is
        queued (the features come back to pinned host memory behind it), on a CPU once it is done."""
        frames = torch.as_tensor(frames)
        if self.device.type == "cuda":
            frames = frames.pin_memory().to(self.device, non_blocking=True)
        with self.autocast():
            features = self.module(self.preprocessing.normalize(frames))
        # Features are stored as float16: clamp so a large activation saturates instead of becoming inf.
        features = features.float().clamp_(-65504, 65504).to(torch.float16).contiguous()
        if self.device.type != "cuda":
            return TrunkBatch(features, None)
        host = torch.empty(features.shape, dtype=features.dtype, pin_memory=True)
        host.copy_(features, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        return TrunkBatch(host, copied)


@dataclass
class TrunkBatch:
    """Features on their way to host memory; `result` waits for them: float16 numpy (N, 512, 14, 14)."""

    features: torch.Tensor
    copied: object  # a torch.cuda.Event recorded after the copy to the host, or None when it is there

    def result(self) -> np.ndarray:
        if self.copied is not None:
            self.copied.synchronize()
        return self.features.numpy()


@contextlib.contextmanager
def quiet_random_warning():
    """Silence the random-weights warning (`RANDOM_WARNING`, one line on stderr) where the caller has
    already said it once."""
    token = _warn_random.set(False)
    try:
        yield
    finally:
        _warn_random.reset(token)


def imagenet_cached() -> bool:
    """Whether the ImageNet weights are in the TORCH_HOME cache (``load_trunk("imagenet")`` would not download)."""
    url = torchvision.models.VGG16_Weights.IMAGENET1K_V1.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


def trunk_macs() -> int:
    """Multiply-accumulates of the trunk per 224x224 frame, summed over its modules (no weights built)."""
    with torch.device("meta"):
        layers = torchvision.models.vgg16().features[:RELU5_3]
    h, w = 224, 224
    macs = 0
    for layer in layers:
        if isinstance(layer, torch.nn.Conv2d):
            kh, kw = layer.kernel_size
            (sh, sw), (ph, pw) = layer.stride, layer.padding
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            macs += h * w * layer.out_channels * layer.in_channels * kh * kw
        elif isinstance(layer, torch.nn.MaxPool2d):
            h, w = h // 2, w // 2
    return macs
