"""Generated kernels against PyTorch on Triton's CPU interpreter, at random shapes: sizes that are
not multiples of 16, size-1 dims, batch 1 and 3. Every case also checks that kernels ran."""

import pytest
import torch
import torch.nn.functional as F

import blade
from tests.unit.op_matrix import Attention, ConvBlock, Elementwise, Geglu

KERNELS = blade.Config(executor="kernels", check_shapes=True, kernel_cache_dir=None)


def _run(model, make, sizes, atol=1e-4):
    model = model.eval()
    opt = blade.optimize(model, make(*sizes[0]), config=KERNELS)
    stats = opt.variants[0].program.launch_stats
    for size in sizes:
        inputs = make(*size)
        with torch.no_grad():
            out, ref = opt(*inputs), model(*inputs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        refs = ref if isinstance(ref, (tuple, list)) else (ref,)
        for o, r in zip(outs, refs):
            torch.testing.assert_close(o, r, atol=atol, rtol=1e-4, equal_nan=True)
    assert stats.launches > 0
    return opt


def _assert_gn_schedule(opt, schedule):
    """The forced GroupNorm schedule is the one that ran."""
    names = opt.variants[0].program.launch_stats.by_kernel
    fused = sum(v for k, v in names.items() if k.endswith("_res"))
    stats = sum(v for k, v in names.items() if k.endswith("_stats"))
    assert (fused > 0 and stats == 0) if schedule == "one" else (stats > 0 and fused == 0), dict(names)


class ResnetLike(torch.nn.Module):
    """conv -> (+ broadcast time bias) -> GroupNorm -> SiLU -> conv, + residual: the UNet pattern."""

    def __init__(self, c=24, groups=4):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(c, c, 3, padding=1)
        self.temb = torch.nn.Linear(8, c)
        self.norm = torch.nn.GroupNorm(groups, c)
        self.conv2 = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, t):
        h = self.conv1(x) + self.temb(t)[:, :, None, None]
        return x + self.conv2(F.silu(self.norm(h)))


@pytest.fixture(params=["one", "two"])
def gn_schedule(request, monkeypatch):
    """Run a GroupNorm test with each schedule forced: one launch, and statistics + apply."""
    from blade.executors.launch import KernelLauncher
    monkeypatch.setattr(KernelLauncher, "gn_schedule", request.param)
    return request.param


def test_group_norm_with_prologue_and_epilogue(gn_schedule):
    opt = _run(ResnetLike(), lambda b, h, w: (torch.randn(b, 24, h, w), torch.randn(b, 8)),
               [(2, 9, 13), (1, 5, 1), (3, 17, 4)])
    _assert_gn_schedule(opt, gn_schedule)
    labels = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert "add+add+group_norm+silu" in labels  # conv bias + time embedding, norm, SiLU: one kernel


def test_group_norm_many_chunks_and_odd_channels(gn_schedule):
    # 20 channels in 5 groups (4 per group), enough pixels that each image is split into chunks
    opt = _run(ResnetLike(c=20, groups=5), lambda b, h, w: (torch.randn(b, 20, h, w), torch.randn(b, 8)),
               [(2, 40, 37), (3, 3, 3)])
    _assert_gn_schedule(opt, gn_schedule)


class ResidualUpsample(torch.nn.Module):
    """conv + residual, then nearest 2x upsample and a conv: the SD up-block ending."""

    def __init__(self, c=12):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.out = torch.nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        h = x + self.conv(x)
        return self.out(F.interpolate(h, scale_factor=2.0, mode="nearest")), F.interpolate(x, scale_factor=2.0)


def test_upsample_fuses_into_the_residual_kernel():
    opt = _run(ResidualUpsample(), lambda b, h, w: (torch.randn(b, 12, h, w),), [(2, 5, 7), (1, 1, 3), (3, 9, 4)])
    labels = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert "add+add+upsample" in labels, labels   # conv bias, residual, upsample: one kernel
    assert "upsample" in labels, labels           # an upsample of a plain input: a kernel by itself
    assert not any(op.name == "blade.upsample" for op in opt.report.module.walk()
                   if op.parent_op() is None or op.parent_op().name != "blade.fused"), "an upsample left to PyTorch"


def test_conv_block():
    _run(ConvBlock(), lambda b, n: (torch.randn(b, 4, n, n + 3),), [(2, 12), (1, 7), (3, 17)])


def test_layer_norm_attention_block():
    _run(Attention(), lambda b, n: (torch.randn(b, n, 16),), [(2, 12), (1, 1), (3, 17)])


def test_geglu():
    opt = _run(Geglu(), lambda b, n: (torch.randn(b, n, 16),), [(2, 12), (1, 7), (3, 1)])
    labels = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert len(labels) == 1, labels


def test_elementwise_chain_is_one_kernel():
    opt = _run(Elementwise(), lambda b, n: (torch.randn(b, n, 5),), [(2, 12), (1, 7), (3, 17)])
    assert sum(op.name == "blade.fused" for op in opt.report.module.walk()) == 1


class Softmax(torch.nn.Module):
    def forward(self, x, bias):
        return torch.softmax(x * 0.125 + bias, dim=-1)


def test_softmax_with_prologue():
    _run(Softmax(), lambda b, n: (torch.randn(b, 3, n, 33), torch.randn(33)), [(2, 5), (1, 1), (3, 9)])


# bfloat16 is checked on the GPU only: Triton's interpreter truncates float32 -> bfloat16 instead
# of rounding to nearest (twice PyTorch's rounding error), which says nothing about the kernel.
@pytest.mark.parametrize("dtype", [torch.float16])
def test_low_precision_storage(dtype):
    model = ResnetLike().to(dtype)
    opt = blade.optimize(model.eval(), (torch.randn(2, 24, 6, 7, dtype=dtype), torch.randn(2, 8, dtype=dtype)),
                         config=KERNELS)
    x, t = torch.randn(3, 24, 5, 9, dtype=dtype), torch.randn(3, 8, dtype=dtype)
    ref32 = ResnetLike().eval()
    ref32.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    exact = ref32(x.float(), t.float())
    err_blade = (opt(x, t).float() - exact).abs().max().item()
    err_eager = (model(x, t).float() - exact).abs().max().item()
    assert err_blade <= 2 * err_eager + 1e-6


@pytest.mark.model
def test_clip_text_encoder_with_generated_kernels():
    from blade import models

    model = models.clip_text_encoder()
    opt = blade.optimize(model, models.clip_inputs(2, 77), config=KERNELS)
    for b, s in [(1, 19), (3, 7)]:
        (ids,) = models.clip_inputs(b, s, seed=s)
        with torch.no_grad():
            out, ref = opt(ids).last_hidden_state, model(ids).last_hidden_state
        assert (out - ref).abs().max().item() / ref.abs().max().item() < 1e-4
    # at least 12 layers x (2 layer norms + the MLP's activation) launched per call (the causal
    # mask's kernels are gone since canonicalize makes it is_causal: 38 per call)
    assert opt.variants[0].program.launch_stats.launches >= 2 * 36


@pytest.mark.model
def test_vae_decoder_with_generated_kernels():
    from blade import models

    model = models.vae_decoder()
    opt = blade.optimize(model, models.vae_inputs(1, 64, 64), config=KERNELS)
    for b, h, w in [(1, 64, 64), (2, 40, 24)]:
        (z,) = models.vae_inputs(b, h, w, seed=h)
        with torch.no_grad():
            out, ref = opt(z), model(z)
        assert (out - ref).abs().max().item() / ref.abs().max().item() < 1e-4


class LinearBroadcasts(torch.nn.Module):
    """Inputs that vary along every row dim, a leading one, a trailing range and a middle one:
    each is one collapsed row stride (linear addressing)."""

    def forward(self, x, per_image, per_position, per_middle):
        # x [B, T, U, C]; per_image [B, C] -> [B, 1, 1, C]; per_position [T, U, C];
        # per_middle [T, C] -> [1, T, 1, C]
        return torch.tanh(x * 0.5 + per_image[:, None, None]) * per_position - per_middle[None, :, None]


class CoordBroadcasts(torch.nn.Module):
    """An input broadcast along a non-contiguous set of row dims ([B, 1, U, C]) and a transposed
    view: per-dim coordinates, or a copy to a collapsible layout."""

    def forward(self, x, gapped, swapped):
        return x * gapped[:, None] + swapped.transpose(1, 2)  # gapped [B, U, C] -> [B, 1, U, C]


def _addressing(opt):
    from blade.codegen.emit import plan_kernel
    from blade.dialects.kernel import FusedOp

    return [plan_kernel(op).addressing for op in opt.report.module.walk() if isinstance(op, FusedOp)]


def test_linear_row_addressing_forms():
    opt = _run(LinearBroadcasts(),
               lambda b, t, u, c: (torch.randn(b, t, u, c), torch.randn(b, c), torch.randn(t, u, c),
                                   torch.randn(t, c)),
               [(2, 5, 3, 7), (1, 1, 4, 16), (3, 6, 1, 9)])
    assert _addressing(opt) == ["linear"]
    from blade.codegen.emit import plan_kernel

    plan = plan_kernel(next(op for op in opt.report.module.walk() if op.name == "blade.fused"))
    assert sorted(s.form for s in plan.inputs) == ["full", "middle", "prefix", "suffix"]
    # a view whose row dims do not collapse into one stride is copied first, and counted
    x = torch.randn(2, 3, 5, 7).transpose(1, 2)
    args = (x, torch.randn(2, 7), torch.randn(5, 3, 7), torch.randn(5, 7))
    stats = opt.variants[0].program.launch_stats
    before = stats.layout_copies
    with torch.no_grad():
        torch.testing.assert_close(opt(*args), LinearBroadcasts()(*args), atol=1e-4, rtol=1e-4)
    assert stats.layout_copies == before + 1


def test_coordinate_addressing_and_uncollapsible_views():
    opt = _run(CoordBroadcasts(),
               lambda b, t, u, c: (torch.randn(b, t, u, c), torch.randn(b, u, c), torch.randn(b, u, t, c)),
               [(2, 5, 3, 7), (1, 1, 4, 16), (3, 6, 2, 9)])
    assert "coords" in _addressing(opt)


class Rounding(torch.nn.Module):
    """floor, ceil, trunc, round (ties to even), sign, log2/exp2, fmod and the NaN/inf tests, one kernel."""

    def forward(self, x, i):
        y = torch.round(x) + torch.floor(x) * 2 - torch.ceil(x) + torch.trunc(x) * torch.sign(x)
        z = torch.exp2(x * 0.5) + torch.log2(x.abs() + 1) + torch.fmod(x, 0.75)
        flags = torch.isnan(x) | torch.isinf(x * 1e38)
        return y, z, flags, torch.round(i) + torch.sign(i) + torch.floor(i) + torch.fmod(i, -4), torch.isnan(i)


def test_rounding_and_sign_in_a_kernel():
    ties = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, -0.49999997, 2**23 + 1.0, -(2**24) - 2.0,
                         float("nan"), 0.0, -0.0, 1e-30, 7.0, -7.25])

    def make(b, n):
        x = torch.randn(b, n) * 5
        x.view(-1)[: min(x.numel(), ties.numel())] = ties[: x.numel()]
        return x, torch.randint(-9, 9, (b, n))

    opt = _run(Rounding(), make, [(2, 12), (1, 7), (3, 17)], atol=1e-5)
    fused = [op for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert fused and not opt.report.unsupported, opt.report.unsupported
