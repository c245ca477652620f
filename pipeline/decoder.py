"""The 3DSAL 3D-CNN decoder (DESIGN.md section 1; the authors' Keras decoder).

Input: a weighted spatio-temporal cuboid of VGG-16 relu5_3 features, (N, 512, 6, 14, 14),
time oldest first (see :mod:`pipeline.windows`). Output: a saliency map (N, 1, 224, 224) in [0, 1].

Shapes (C, T, H, W), block by block (DESIGN.md section 1):

====== ================================================================ ===================
block  layers                                                           output
====== ================================================================ ===================
in                                                                      512, 6, 14, 14
1      Conv3d 512->512 k3x3x3 + ReLU; Conv3d 512->512 k3x3x3 + ReLU     512, 6, 14, 14
pool1  MaxPool3d k(4,2,2) s(1,2,2), no padding; BatchNorm3d(512)        512, 3,  7,  7
2      ConvT3d 512->512 k(1,3,3) s(1,2,2) + ReLU; Conv3d 512 k3 + ReLU  512, 3, 14, 14
3      ConvT3d 512->256 k(3,3,3) s(1,2,2) + ReLU; Conv3d 256 k3 x2      256, 3, 28, 28
pool3  MaxPool3d k(3,1,1); BatchNorm3d(256)                             256, 1, 28, 28
4      ConvT3d 256->128 k(1,3,3) s(1,2,2); Conv3d 128 k(1,3,3) x2; BN   128, 1, 56, 56
5      ConvT3d 128->64 k(1,3,3) s(1,2,2); Conv3d 64 k(1,3,3) x2; BN      64, 1, 112, 112
6      ConvT3d 64->32 k(1,3,3) s(1,2,2); Conv3d 32->32, 32->16 + ReLU;    1, 1, 224, 224
       Conv3d 16->1 k(1,3,3) + sigmoid
out    drop T (size 1)                                                  (N, 1, 224, 224)
====== ================================================================ ===================

Every conv has a bias and "same" padding (h, w and t kept): (1,1,1) for k3x3x3, (0,1,1) for
k(1,3,3). Every transposed conv doubles H and W and keeps T, like Keras' ``padding='same'``
transposed conv with strides (1,2,2) (:class:`SameConvTranspose3d`): its full output has 2H+1 rows
(and columns), and one of them goes. Where is the decoder's `transposed_crop` setting
(:data:`TRANSPOSED_CROPS`): ``start`` (PyTorch's padding 1 / output_padding 1; what sal3d trains
with, and what every checkpoint that records no setting was trained with) or ``end`` (TensorFlow's
and Keras' 'same'; the authors' published model, imported by `pipeline.keras_import`). The two
differ by a one-pixel shift per transposed conv; with ``end`` the decoder computes the authors' Keras
network. ReLU follows every conv and transposed conv except the last conv, which has a sigmoid.

Parameter count, Keras style (weights + biases + BatchNorm gamma, beta, running mean and running
variance, i.e. without ``num_batches_tracked``): 31,447,841 -- see :func:`keras_parameter_count`.

Forward cost per window, summed per layer by :func:`decoder_macs` from the module shapes:
34.8 GMAC counting only the multiplies a transposed conv needs (block 1 alone is 16.7 GMAC,
block 3 10.4), or 44.2 GMAC counting each transposed conv as a dense conv over its 2x upsampled
output (DESIGN.md's "about 44 GMAC"; some profilers count it that way). Either way it dwarfs the
trunk's 15.4 GMAC per frame. Training costs roughly 3x the forward per sample.

The model is channels_last_3d friendly: nothing calls ``.view`` on a possibly non-contiguous
tensor; the output drops T with ``squeeze(2)``.
"""

from __future__ import annotations

import torch
from torch import nn

from sal3d.pipeline.choices import INITIALIZATIONS, TORCH_BATCHNORM

__all__ = [
    "SaliencyDecoder",
    "SameConvTranspose3d",
    "TRANSPOSED_CROPS",
    "DEFAULT_TRANSPOSED_CROP",
    "initialize",
    "keras_parameter_count",
    "decoder_macs",
    "stage_shapes",
    "layer_output_shape",
    "KERAS_PARAMETER_COUNT",
    "INPUT_SHAPE",
    "OUTPUT_SHAPE",
]

#: (C, T, H, W) of one input window.
INPUT_SHAPE = (512, 6, 14, 14)
#: (C, H, W) of one output map.
OUTPUT_SHAPE = (1, 224, 224)
#: The paper's (and the authors' Keras model's) total parameter count.
KERAS_PARAMETER_COUNT = 31_447_841


#: Where a transposed conv's full output (2H+1 rows and columns) loses its extra row and column:
#: ``start`` (PyTorch's padding/output_padding) or ``end`` (TensorFlow's and Keras' 'same').
TRANSPOSED_CROPS = ("start", "end")
#: What sal3d trains with, and what a checkpoint that records no setting was trained with.
DEFAULT_TRANSPOSED_CROP = "start"

_K3 = (3, 3, 3)
_K133 = (1, 3, 3)
_UP = (1, 2, 2)  # transposed-conv stride: double H, W; keep T


def _conv(cin: int, cout: int, kernel: tuple[int, int, int]) -> nn.Conv3d:
    """Conv3d with bias and 'same' padding (stride 1, odd kernel)."""
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(cin, cout, kernel, stride=1, padding=padding, bias=True)


class SameConvTranspose3d(nn.ConvTranspose3d):
    """ConvTranspose3d with bias, stride (1,2,2), odd kernel: (N, C_in, T, H, W) -> (N, C_out, T, 2H, 2W),
    like Keras' ``Conv3DTranspose(strides=(1, 2, 2), padding='same')``.

    The full transposed output has (H-1)*2 + 3 = 2H+1 rows (and columns); `crop` says which one goes:
    ``start``: padding (t, 1, 1) and output_padding (0, 1, 1), PyTorch's way (rows 1 .. 2H kept);
    ``end``: padding (t, 0, 0), then the last row and column dropped, TensorFlow's (rows 0 .. 2H-1).
    T keeps its size by padding k//2 either way. The weights (``weight``, ``bias``) are the same
    parameters as an ``nn.ConvTranspose3d``'s, so a state_dict loads into either.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int], crop: str = DEFAULT_TRANSPOSED_CROP):
        if crop not in TRANSPOSED_CROPS:
            raise ValueError(f"transposed_crop must be one of {', '.join(TRANSPOSED_CROPS)}, got {crop!r}")
        at_start = crop == "start"
        padding = (kernel[0] // 2, int(at_start), int(at_start))
        super().__init__(cin, cout, kernel, stride=_UP, padding=padding,
                         output_padding=(0, int(at_start), int(at_start)), bias=True)
        self.crop = crop
        #: rows/columns dropped after the transposed conv, per dimension (T, H, W)
        self.trim = (0, 0, 0) if at_start else (0, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y if self.crop == "start" else y[..., :-1, :-1]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, crop={self.crop!r}"


class SaliencyDecoder(nn.Module):
    """3DSAL decoder: (N, 512, 6, 14, 14) weighted feature cuboid -> (N, 1, 224, 224) in [0, 1].

    Blocks (C, T, H, W after each; see the module docstring for the full table):

    - ``block1``: 2 x [Conv3d k3x3x3 + ReLU]                   -> (512, 6, 14, 14)
    - ``pool1``:  MaxPool3d k(4,2,2) s(1,2,2) + BatchNorm3d    -> (512, 3, 7, 7)
    - ``block2``: ConvT k(1,3,3) + ReLU, Conv3d k3 + ReLU      -> (512, 3, 14, 14)
    - ``block3``: ConvT k(3,3,3) + ReLU, 2 x [Conv3d k3 + ReLU] -> (256, 3, 28, 28)
    - ``pool3``:  MaxPool3d k(3,1,1) + BatchNorm3d             -> (256, 1, 28, 28)
    - ``block4``: ConvT + ReLU, 2 x [Conv3d k(1,3,3) + ReLU], BN -> (128, 1, 56, 56)
    - ``block5``: ConvT + ReLU, 2 x [Conv3d k(1,3,3) + ReLU], BN -> (64, 1, 112, 112)
    - ``block6``: ConvT + ReLU, Conv 32->32 + ReLU, 32->16 + ReLU, 16->1 + sigmoid
                                                               -> (1, 1, 224, 224)
    - output: T (size 1) dropped                               -> (N, 1, 224, 224)
    """

    #: names of the stages, in forward order (each is an ``nn.Sequential`` attribute).
    STAGES = ("block1", "pool1", "block2", "block3", "pool3", "block4", "block5", "block6")

    def __init__(self, bn_momentum: float = TORCH_BATCHNORM["bn_momentum"],
                 bn_eps: float = TORCH_BATCHNORM["bn_eps"], transposed_crop: str = DEFAULT_TRANSPOSED_CROP) -> None:
        """bn_momentum, bn_eps: every BatchNorm's (PyTorch's defaults, `TORCH_BATCHNORM`, so that a
        checkpoint without them loads as it was trained; `KERAS_BATCHNORM` is the authors' model's).
        transposed_crop: every transposed conv's (:data:`TRANSPOSED_CROPS`; ``end`` for the authors' model)."""
        super().__init__()

        def _deconv(cin: int, cout: int, kernel: tuple[int, int, int]) -> SameConvTranspose3d:
            return SameConvTranspose3d(cin, cout, kernel, transposed_crop)

        self.block1 = nn.Sequential(
            _conv(512, 512, _K3), nn.ReLU(inplace=True),
            _conv(512, 512, _K3), nn.ReLU(inplace=True),
        )  # -> (512, 6, 14, 14)
        self.pool1 = nn.Sequential(
            nn.MaxPool3d(kernel_size=(4, 2, 2), stride=(1, 2, 2), padding=0),
            nn.BatchNorm3d(512, eps=bn_eps, momentum=bn_momentum),
        )  # -> (512, 3, 7, 7)
        self.block2 = nn.Sequential(
            _deconv(512, 512, _K133), nn.ReLU(inplace=True),
            _conv(512, 512, _K3), nn.ReLU(inplace=True),
        )  # -> (512, 3, 14, 14)
        self.block3 = nn.Sequential(
            _deconv(512, 256, _K3), nn.ReLU(inplace=True),
            _conv(256, 256, _K3), nn.ReLU(inplace=True),
            _conv(256, 256, _K3), nn.ReLU(inplace=True),
        )  # -> (256, 3, 28, 28)
        self.pool3 = nn.Sequential(
            nn.MaxPool3d(kernel_size=(3, 1, 1)),  # stride = kernel
            nn.BatchNorm3d(256, eps=bn_eps, momentum=bn_momentum),
        )  # -> (256, 1, 28, 28)
        self.block4 = nn.Sequential(
            _deconv(256, 128, _K133), nn.ReLU(inplace=True),
            _conv(128, 128, _K133), nn.ReLU(inplace=True),
            _conv(128, 128, _K133), nn.ReLU(inplace=True),
            nn.BatchNorm3d(128, eps=bn_eps, momentum=bn_momentum),
        )  # -> (128, 1, 56, 56)
        self.block5 = nn.Sequential(
            _deconv(128, 64, _K133), nn.ReLU(inplace=True),
            _conv(64, 64, _K133), nn.ReLU(inplace=True),
            _conv(64, 64, _K133), nn.ReLU(inplace=True),
            nn.BatchNorm3d(64, eps=bn_eps, momentum=bn_momentum),
        )  # -> (64, 1, 112, 112)
        self.block6 = nn.Sequential(
            _deconv(64, 32, _K133), nn.ReLU(inplace=True),
            _conv(32, 32, _K133), nn.ReLU(inplace=True),
            _conv(32, 16, _K133), nn.ReLU(inplace=True),
            _conv(16, 1, _K133), nn.Sigmoid(),
        )  # -> (1, 1, 224, 224)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 512, 6, 14, 14) -> (N, 1, 224, 224), values in [0, 1]."""
        if x.dim() != 5 or tuple(x.shape[1:]) != INPUT_SHAPE:
            raise ValueError(
                f"SaliencyDecoder expects (N, {', '.join(map(str, INPUT_SHAPE))}), "
                f"got {tuple(x.shape)}"
            )
        x = self.block1(x)  # (N, 512, 6, 14, 14)
        x = self.pool1(x)  # (N, 512, 3, 7, 7)
        x = self.block2(x)  # (N, 512, 3, 14, 14)
        x = self.block3(x)  # (N, 256, 3, 28, 28)
        x = self.pool3(x)  # (N, 256, 1, 28, 28)
        x = self.block4(x)  # (N, 128, 1, 56, 56)
        x = self.block5(x)  # (N, 64, 1, 112, 112)
        x = self.block6(x)  # (N, 1, 1, 224, 224)
        return x.squeeze(2)  # (N, 1, 224, 224)


def initialize(model: nn.Module, scheme: str) -> nn.Module:
    """Re-initialize every (transposed) convolution of `model` in place by `scheme` (INITIALIZATIONS):
    ``glorot_uniform`` draws kernels from U(-a, a), a = sqrt(6 / (fan_in + fan_out)), and zeroes the
    biases, as Keras does; ``pytorch`` keeps the layers' own initialization. Returns `model`."""
    if scheme not in INITIALIZATIONS:
        raise ValueError(f"initialization must be one of {', '.join(INITIALIZATIONS)}, got {scheme!r}")
    if scheme == "glorot_uniform":
        for module in model.modules():
            if isinstance(module, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def keras_parameter_count(model: nn.Module) -> int:
    """Parameters counted the Keras way: every parameter plus BatchNorm running mean and variance.

    ``num_batches_tracked`` (a PyTorch-only counter) is not counted. For :class:`SaliencyDecoder`
    this is 31,447,841, the paper's total.
    """
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            total += module.running_mean.numel() + module.running_var.numel()
    return total


def layer_output_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """(C, T, H, W) after ``module``, by PyTorch's documented size formulas (dilation 1)."""
    c, *sizes = shape
    if isinstance(module, nn.Conv3d):
        sizes = [
            (n + 2 * p - k) // s + 1
            for n, k, s, p in zip(sizes, module.kernel_size, module.stride, module.padding)
        ]
        return (module.out_channels, *sizes)
    if isinstance(module, nn.ConvTranspose3d):
        trim = getattr(module, "trim", (0, 0, 0))  # SameConvTranspose3d's rows dropped after the conv
        sizes = [
            (n - 1) * s - 2 * p + k + op - cut
            for n, k, s, p, op, cut in zip(
                sizes, module.kernel_size, module.stride, module.padding, module.output_padding, trim
            )
        ]
        return (module.out_channels, *sizes)
    if isinstance(module, nn.MaxPool3d):
        triple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * 3  # noqa: E731
        kernel, pad = triple(module.kernel_size), triple(module.padding)
        stride = triple(module.stride if module.stride is not None else module.kernel_size)
        sizes = [(n + 2 * p - k) // s + 1 for n, k, s, p in zip(sizes, kernel, stride, pad)]
        return (c, *sizes)
    if isinstance(module, (nn.ReLU, nn.Sigmoid, nn.BatchNorm3d)):
        return shape
    raise TypeError(f"no shape rule for {type(module).__name__}")


def stage_shapes(model: SaliencyDecoder | None = None) -> dict[str, tuple[int, int, int, int]]:
    """(C, T, H, W) after each stage of :data:`SaliencyDecoder.STAGES`, computed from the modules'
    hyper-parameters alone (no forward pass)."""
    if model is None:
        with torch.device("meta"):  # hyper-parameters only: no weights allocated
            model = SaliencyDecoder()
    shape: tuple[int, ...] = INPUT_SHAPE
    shapes = {}
    for name in model.STAGES:
        for layer in getattr(model, name):
            shape = layer_output_shape(layer, shape)
        shapes[name] = shape
    return shapes


def decoder_macs(
    model: SaliencyDecoder | None = None, batch: int = 1, *, dense_transposed: bool = False
) -> int:
    """Multiply-accumulates of one forward pass of the decoder on ``batch`` windows.

    Summed layer by layer from the modules' hyper-parameters and the shapes they produce (the same
    size formulas as PyTorch; :func:`stage_shapes`), with no forward pass:

    - Conv3d: ``output elements x C_in/groups x kernel volume``.
    - ConvTranspose3d: ``input elements x C_out/groups x kernel volume`` (each input element is
      scattered into a kernel-sized patch of every output channel): the MACs actually needed,
      34.8 GMAC per window in all.
    - ``dense_transposed=True`` instead counts a transposed conv as a conv over its (2x upsampled,
      zero-stuffed) output grid, ``output elements x C_in/groups x kernel volume``, as several
      profilers do; that gives 44.2 GMAC per window, DESIGN.md's "about 44".

    Pooling, BatchNorm and activations (a few MFLOP) are not counted.
    """
    if model is None:
        with torch.device("meta"):  # hyper-parameters only: no weights allocated
            model = SaliencyDecoder()
    shape: tuple[int, ...] = INPUT_SHAPE
    macs = 0
    for name in model.STAGES:
        for layer in getattr(model, name):
            out = layer_output_shape(layer, shape)
            if isinstance(layer, (nn.Conv3d, nn.ConvTranspose3d)):
                kvol = 1
                for k in layer.kernel_size:
                    kvol *= k
                n_in = 1
                for n in shape:
                    n_in *= n
                n_out = 1
                for n in out:
                    n_out *= n
                if isinstance(layer, nn.ConvTranspose3d) and not dense_transposed:
                    macs += n_in * (layer.out_channels // layer.groups) * kvol
                else:
                    macs += n_out * (layer.in_channels // layer.groups) * kvol
            shape = out
    return batch * macs
