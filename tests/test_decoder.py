"""The 3DSAL decoder: parameter count, every intermediate shape of DESIGN.md section 1, output."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from sal3d.pipeline.decoder import (
    KERAS_PARAMETER_COUNT,
    SaliencyDecoder,
    decoder_macs,
    keras_parameter_count,
    stage_shapes,
)

# (stage name, output (C, T, H, W)) from DESIGN.md section 1.
TABLE = [
    ("block1", (512, 6, 14, 14)),
    ("pool1", (512, 3, 7, 7)),
    ("block2", (512, 3, 14, 14)),
    ("block3", (256, 3, 28, 28)),
    ("pool3", (256, 1, 28, 28)),
    ("block4", (128, 1, 56, 56)),
    ("block5", (64, 1, 112, 112)),
    ("block6", (1, 1, 224, 224)),
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SaliencyDecoder().eval()


@pytest.fixture(scope="module")
def traced(model):
    """One forward at N=1 recording every stage's output shape (and the final output)."""
    shapes = {}
    handles = [
        getattr(model, name).register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in SaliencyDecoder.STAGES
    ]
    torch.manual_seed(1)
    x = torch.randn(1, 512, 6, 14, 14)
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in handles:
            h.remove()
    return shapes, y, x


def test_keras_parameter_count_is_the_papers_total(model):
    assert keras_parameter_count(model) == KERAS_PARAMETER_COUNT == 31_447_841
    # BN running stats are what separates the two counts: 2 x (512 + 256 + 128 + 64).
    assert keras_parameter_count(model) - sum(p.numel() for p in model.parameters()) == 1920


def test_every_conv_has_bias_and_layer_counts(model):
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    deconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose3d)]
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm3d)]
    assert len(convs) == 12 and len(deconvs) == 5 and len(bns) == 4
    assert all(m.bias is not None for m in convs + deconvs)
    assert [m.num_features for m in bns] == [512, 256, 128, 64]


def test_stage_order_matches_table():
    assert SaliencyDecoder.STAGES == tuple(name for name, _ in TABLE)


@pytest.mark.parametrize("name,shape", TABLE)
def test_intermediate_shape(traced, name, shape):
    shapes, _, _ = traced
    assert shapes[name] == (1, *shape)


def test_output_shape_and_range(traced):
    _, y, _ = traced
    assert y.shape == (1, 1, 224, 224)
    assert torch.isfinite(y).all()
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_activations_relu_everywhere_but_sigmoid_last(model):
    # Each conv/deconv is followed by ReLU, except the very last conv (sigmoid).
    layers = [m for name in SaliencyDecoder.STAGES for m in getattr(model, name)]
    for i, m in enumerate(layers):
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            nxt = layers[i + 1]
            if i + 1 == len(layers) - 1:
                assert isinstance(nxt, nn.Sigmoid)
            else:
                assert isinstance(nxt, nn.ReLU), (i, m)
    assert isinstance(layers[-1], nn.Sigmoid)


def test_output_saturates_within_unit_interval(model):
    # Push the sigmoid hard both ways (block 6 alone, to stay fast): the output stays in [0, 1]
    # and really moves.
    block6 = model.block6
    last = block6[-2]
    saved = last.bias.detach().clone()
    torch.manual_seed(3)
    x = torch.rand(1, 64, 1, 112, 112)
    try:
        with torch.no_grad():
            last.bias.fill_(40.0)
            hi = block6(x)
            last.bias.fill_(-40.0)
            lo = block6(x)
    finally:
        with torch.no_grad():
            last.bias.copy_(saved)
    assert hi.shape == lo.shape == (1, 1, 1, 224, 224)
    assert float(hi.min()) > 0.99 and float(hi.max()) <= 1.0
    assert float(lo.max()) < 0.01 and float(lo.min()) >= 0.0


def test_wrong_input_shape_raises(model):
    with pytest.raises(ValueError):
        model(torch.zeros(1, 6, 512, 14, 14))


def test_channels_last_3d_model_and_input(model):
    # Model and input in channels_last_3d (how a GPU run holds them): every stage runs (no .view on
    # a non-contiguous tensor) and matches the contiguous model. On a 4x4 input, run stage by stage
    # (forward insists on 14x14), to stay fast; the layers do not care about H, W.
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last_3d)
    torch.manual_seed(4)
    x = torch.randn(1, 512, 6, 4, 4)
    ref, got = x, x.to(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        for name in SaliencyDecoder.STAGES:
            ref, got = getattr(model, name)(ref), getattr(cl, name)(got)
            assert got.shape == ref.shape
            assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5), name
    assert got.shape == (1, 1, 1, 64, 64)


def test_output_squeeze_is_layout_agnostic():
    # Forward's last step (dropping T) must not need a contiguous block-6 output: stub the stages
    # so that block 6 hands back a non-contiguous (N, 1, 1, 224, 224) tensor, and call forward.
    z = torch.rand(2, 1, 1, 224, 224).transpose(3, 4)
    assert not z.is_contiguous()

    class Const(nn.Module):
        def forward(self, h):
            return z

    with torch.device("meta"):
        stub = SaliencyDecoder()
    for name in SaliencyDecoder.STAGES[:-1]:
        setattr(stub, name, nn.Identity())
    stub.block6 = Const()
    out = stub(torch.zeros(2, 512, 6, 14, 14))
    assert out.shape == (2, 1, 224, 224)
    assert torch.equal(out, z.contiguous().reshape(2, 1, 224, 224))


def test_stage_shapes_without_forward_agree_with_forward(model, traced):
    shapes, _, _ = traced
    assert stage_shapes(model) == dict(TABLE)
    assert {name: (1, *shape) for name, shape in stage_shapes(model).items()} == shapes


def test_decoder_macs(model):
    # Hand count: block 1 2 x 6*14*14*512 * 512*27; transposed convs counted as scatters
    # (input elements x C_out x kernel volume).
    macs = decoder_macs(model)
    assert decoder_macs(model, batch=1) == macs == 34_804_482_048
    assert 2 * 6 * 14 * 14 * 512 * 512 * 27 == 16_647_192_576  # block 1, about half of it
    assert decoder_macs(model, dense_transposed=True) == 44_168_527_872  # DESIGN.md's "about 44"
    assert decoder_macs(model, batch=3) == 3 * macs


def test_the_authors_keras_initialization_is_one_option_away():
    from sal3d.pipeline.checkpoint import load_decoder
    from sal3d.pipeline.choices import KERAS_BATCHNORM
    from sal3d.pipeline.training import build_model

    model, _ = build_model(torch.device("cpu"), seed=0, prior=0.1, init="glorot_uniform", **KERAS_BATCHNORM)
    convs = [m for m in model.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d))]
    for conv in convs[:-1]:
        assert not conv.bias.any()  # zero biases; the last one starts at logit(prior)
        fan_in = conv.weight[0].numel() if isinstance(conv, torch.nn.Conv3d) else conv.weight[:, 0].numel()
        fan_out = conv.weight[:, 0].numel() if isinstance(conv, torch.nn.Conv3d) else conv.weight[0].numel()
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound  # U(-a, a), glorot
    assert convs[-1].bias.item() == pytest.approx(np.log(0.1 / 0.9), rel=1e-6)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
    assert len(norms) == 4 and all(
        (m.momentum, m.eps) == (KERAS_BATCHNORM["bn_momentum"], KERAS_BATCHNORM["bn_eps"]) for m in norms)
    # a checkpoint carries its BatchNorm settings, and inference uses them (eps changes eval outputs)
    checkpoint = {"model": model.state_dict(), "config": {"decoder": dict(KERAS_BATCHNORM)}}
    loaded = load_decoder(checkpoint, "x.pt", torch.device("cpu"), torch.float32)
    assert all(m.eps == KERAS_BATCHNORM["bn_eps"] for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm3d))
    plain = load_decoder({"model": SaliencyDecoder().state_dict(), "config": {}}, "old.pt", torch.device("cpu"),
                         torch.float32)
    assert all(m.eps == 1e-5 for m in plain.modules() if isinstance(m, torch.nn.BatchNorm3d))
