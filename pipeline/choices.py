"""The choices the commands offer and the decoder's setting defaults, without torch: the command line
lists them without loading torch, and the modules that act on them import them from here.

- `SIZES`: the map sizes predict writes (`pipeline.postprocess`).
- `TRUNKS`, `DEFAULT_TRUNK`: the trunk presets extract offers (`pipeline.trunk`).
- `WEIGHTINGS`: the window weightings, six coefficients each, oldest frame first (`pipeline.windows`
  applies them; DESIGN.md section 1).
- `INITIALIZATIONS`, `DEFAULT_INITIALIZATION`, `TORCH_BATCHNORM`, `KERAS_BATCHNORM`: how the decoder's
  weights start and its BatchNorm settings (`pipeline.decoder`, `pipeline.training`, train-decoder).
- `SELECTION`: the validation scores that can choose best.pt, and whether higher is better.
"""

from __future__ import annotations

import math

#: Map sizes: the frame's own, or the decoder's 224x224.
SIZES = ("original", "224")

#: Trunk presets: torchvision's VGG-16 (ImageNet weights, RGB normalized), or the 3DSal authors' Keras
#: VGG16 features (Keras' weights file, BGR 0..255, cv2 resize, untrained BatchNormalization).
TRUNKS = ("torchvision", "keras-3dsal")
DEFAULT_TRUNK = "torchvision"

#: Weighting name -> six coefficients, oldest frame first.
WEIGHTINGS: dict[str, tuple[float, ...]] = {
    "tanh": tuple(math.tanh(c) for c in (0.4, 0.5, 0.6, 0.7, 0.8, 0.98)),
    "linear": (0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
    "none": (1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
}
#: The paper's weighting ("3DSAL-weighted").
DEFAULT_WEIGHTING = "tanh"

#: Weight initializations: Keras's glorot_uniform kernels with zero biases (the authors'), or PyTorch's
#: layer defaults (kaiming_uniform with a = sqrt(5), uniform biases).
INITIALIZATIONS = ("glorot_uniform", "pytorch")
DEFAULT_INITIALIZATION = "pytorch"
#: PyTorch's BatchNorm defaults: a decoder built without settings (and a checkpoint that records none)
#: has these.
TORCH_BATCHNORM = {"bn_momentum": 0.1, "bn_eps": 1e-5}
#: The authors' Keras layers use Keras's BatchNormalization defaults: momentum 0.99 (PyTorch counts
#: the other way: 0.01) and epsilon 1e-3.
KERAS_BATCHNORM = {"bn_momentum": 0.01, "bn_eps": 1e-3}

#: Validation scores that can choose best.pt, and whether a higher value is better.
SELECTION = {"loss": False, "cc": True, "nss": True}
