"""Ops and size forms that held-out models use and that ran in eager PyTorch before (session 8's
probe over 90 model families and call patterns): each is compiled (nothing in the report's
unsupported list), serves batch 1, an odd size and the compile size with one variant, and matches
eager. The same modules run through generated kernels on Triton's interpreter
(tests/kernels/test_op_coverage_kernels.py).

* variance/std/var_mean in every overload (custom norms, ``InstanceNorm`` via batch norm
  without running stats);
* ``repeat`` and ``flip`` (GPT-J's rotary tables, DeBERTa) without the size-1 guard torch's own
  decomposition of ``repeat`` adds;
* bilinear upsampling (SegFormer, MobileViT, DPT heads), whose decomposition clamps source
  coordinates to ``size - 1`` (a clamp bound the program computes) and truncates a float scale;
* a float computed from sizes used as a tensor operand (DeiT/DiT/Dinov2 position tables resized by
  ``4 / (h // 8)``);
* RMS norm (``nn.RMSNorm``: Flux, SD3);
* ``cumsum`` (position ids from masks), ``gather``, ``argmin`` (library calls of the torch provider);
* average pooling (PoolFormer's border windows that count only in-bounds elements);
* ``reflect``/``replicate``/``circular`` padding as index gathers (vocoders, style-transfer nets);
* weight norm and ``cdist`` through torch's decompositions;
* a broadcast of two sizes that are equal only by a guard torch.export checks at run time (Flux's
  rotary table over ``len(txt_ids) + len(img_ids)`` against the joint sequence).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import blade


class Variance(torch.nn.Module):
    def forward(self, x):
        v, m = torch.var_mean(x, dim=[0, 2], correction=0)
        return (x.var(dim=(1, 2), keepdim=True), torch.var(x, -1, unbiased=False), v, m, x.std(1), torch.var(x),
                x.std(), torch.std(x, (0, 1), correction=2), F.instance_norm(x, eps=1e-5))


class RepeatFlip(torch.nn.Module):
    def forward(self, x):
        return x.repeat(1, 2, 1), x.repeat(2, 1, 1, 3), x.flip(1), torch.flip(x, (0, 2)), x[:, 0].repeat(3, 1) * 2


class Bilinear(torch.nn.Module):
    def forward(self, x):
        a = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        b = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)
        c = F.interpolate(x, size=(5, 7), mode="bilinear")
        return a, b, c


class ScaleFromSizes(torch.nn.Module):
    """A table resized by a float of sizes: ``pos * (4 / (w // 2))``, plus a rounding chain."""

    def forward(self, x):
        scale = 4 / (x.shape[-1] // 2)
        pos = torch.arange(x.shape[-1], dtype=torch.float32, device=x.device)
        return x * (pos * scale), torch.round(x * 3) + torch.sign(x) + torch.floor(x) - torch.ceil(x) + torch.trunc(x)


class RMSNorms(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.n = torch.nn.RMSNorm(8, eps=1e-6)
        self.n2 = torch.nn.RMSNorm([4, 8])
        with torch.no_grad():
            self.n.weight.normal_()

    def forward(self, x):
        return self.n(x), self.n2(x), F.rms_norm(x, (8,))


class JointSequence(torch.nn.Module):
    """Text and image tokens concatenated, times a table built from their ids concatenated: the
    two lengths are equal only by a run-time check of torch.export."""

    def forward(self, txt, img, txt_ids, img_ids):
        return torch.cat([txt, img], 1) * torch.cat([txt_ids, img_ids], 0).sin()


class PositionsAndPicks(torch.nn.Module):
    """RoBERTa's position ids (``cumsum`` of the mask), a ``gather`` along each dim and a
    nearest-code ``argmin`` (VQ models)."""

    def forward(self, x, mask, idx):
        pos = torch.cumsum(mask, dim=1) * mask + 1
        g0 = torch.gather(x, 1, idx)
        g1 = torch.gather(x.t(), 0, idx.t())
        csf = torch.cumsum(x, -1)
        return pos, g0, g1, x.argmin(-1), torch.argmin(x, 0, keepdim=True), csf


class AvgPools(torch.nn.Module):
    """PoolFormer's token mixer (3x3, stride 1, padding 1, border windows averaging only their
    in-bounds elements), ResNet-D's 2x2 shortcut pool, a divisor override."""

    def forward(self, x):
        a = F.avg_pool2d(x, 3, 1, 1, count_include_pad=False) - x
        b = F.avg_pool2d(x, 2, 2)
        c = F.avg_pool2d(x, 3, 2, 1)
        d = F.avg_pool2d(x, (1, 3), 1, (0, 1), divisor_override=2)
        return a, b, c, d


class TransposedConvs(torch.nn.Module):
    """A 2x upsampling transposed convolution (SAM's mask decoder, DPT's reassemble stage) feeding
    GroupNorm + SiLU, and a grouped, dilated 1-D one with output padding (vocoders)."""

    def __init__(self):
        super().__init__()
        self.up = torch.nn.ConvTranspose2d(4, 8, 2, stride=2)
        self.norm = torch.nn.GroupNorm(2, 8)
        self.wave = torch.nn.ConvTranspose1d(4, 6, 5, stride=3, padding=2, output_padding=1, groups=2, dilation=2)

    def forward(self, x):
        y = F.silu(self.norm(self.up(x))) + 1.0
        return y, self.wave(x.flatten(2)) * 0.5


class PadToWindows(torch.nn.Module):
    """Swin's window padding: constant padding by amounts computed from the sizes (up to whole
    windows of 7 and 4), a non-zero fill, on float and integer tensors, left and right."""

    def forward(self, x):
        h, w = x.shape[-2], x.shape[-1]
        a = F.pad(x, (0, (7 - w % 7) % 7, 0, (4 - h % 4) % 4)) * 2.0
        b = F.pad(x, ((3 - w % 3) % 3, 1, h % 2, 0), value=-1.5)
        c = F.pad(x.argmax(1), (w % 4, (5 - w % 5) % 5), value=7)
        return a, b, c


class AdaptivePools(torch.nn.Module):
    """UperNet's pyramid pooling (adaptive averages to 1, 2, 3, 6), VGG's head pool to 7x7 (above
    the input size here: overlapping windows) and an adaptive max pool."""

    def forward(self, x):
        pyramid = [F.adaptive_avg_pool2d(x, s).flatten(2) for s in (1, 2, 3, 6)]
        return torch.cat(pyramid, 2), F.adaptive_avg_pool2d(x, (7, 7)), F.adaptive_max_pool2d(x, (2, 3))


class CeilModePools(torch.nn.Module):
    """Pools whose last window may run past the input (``ceil_mode``): timm's ResNet-D shortcut
    (2x2 average, stride 2, in-bounds count) and GoogLeNet's 3x3/2 max pools."""

    def forward(self, x):
        return (F.avg_pool2d(x, 2, 2, ceil_mode=True, count_include_pad=False), F.max_pool2d(x, 3, 2, ceil_mode=True),
                F.avg_pool2d(x, 3, 2, 1, ceil_mode=True))


class RollFmod(torch.nn.Module):
    """``torch.roll`` (its decomposition wraps indices with an integer ``fmod``) and ``fmod`` of
    integers and floats with positive, negative and tensor divisors (C's sign: the dividend's)."""

    def forward(self, x):
        i = (x * 10).to(torch.int64)
        return (torch.roll(x, 3, 1), torch.roll(x, (-2, 1), (1, 2)), torch.fmod(i, 3), torch.fmod(i, -4),
                torch.fmod(i, i.abs() + 1), torch.fmod(x * 7, 1.5), torch.fmod(x * 7, -2.0),
                torch.fmod(x, x.flip(-1).abs() + 0.25))


class PadModes(torch.nn.Module):
    def forward(self, x):
        return (F.pad(x, (1, 2, 2, 1), mode="reflect"), F.pad(x, (3, 0, 1, 1), mode="replicate"),
                F.pad(x[:, 0], (2, 2), mode="reflect"), torch.nn.ReflectionPad2d(1)(x) * 2)


class WeightNormCdist(torch.nn.Module):
    """A weight-normed convolution (wav2vec2's positional conv, vocoders: ``g * v / |v|``
    computed every call) and nearest codebook entries by Euclidean distance (VQ models)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(4, 4, 3, padding=1), dim=2)
        self.codes = torch.nn.Parameter(torch.randn(6, 4))

    def forward(self, x):
        y = self.conv(x).transpose(1, 2)
        d = torch.cdist(y, self.codes.expand(y.shape[0], 6, 4))
        return y, d, d.argmin(-1)


def _picks(b, n):
    x = torch.randn(b, n)
    mask = (torch.rand(b, n) > 0.3).long()
    idx = torch.randint(0, n, (b, max(1, n // 2)))
    return x, mask, idx


def _var_inputs(b, n, m):
    return (torch.randn(b, n, m),)


def _joint(b, n_txt, n_img):
    return (torch.randn(b, n_txt, 8), torch.randn(b, n_img, 8), torch.randn(n_txt, 8), torch.randn(n_img, 8))


#: name -> (module factory, inputs(*size), compile size, other sizes)
CASES = {
    "variance": (Variance, _var_inputs, (3, 5, 7), [(1, 9, 2), (2, 1, 4)]),
    "repeat_flip": (RepeatFlip, lambda b, n: (torch.randn(b, n, 8),), (2, 16), [(1, 9), (3, 13)]),
    "bilinear": (Bilinear, lambda b, h, w: (torch.randn(b, 3, h, w),), (2, 16, 18), [(1, 9, 13), (3, 7, 4)]),
    "scale_from_sizes": (ScaleFromSizes, lambda b, w: (torch.randn(b, 3, w),), (2, 16), [(1, 9), (3, 30)]),
    "rms_norm": (RMSNorms, lambda b, n: (torch.randn(b, n, 4, 8),), (2, 5), [(1, 3), (3, 7)]),
    "joint_sequence": (JointSequence, _joint, (2, 3, 5), [(1, 7, 2), (3, 1, 9)]),
    "positions_and_picks": (PositionsAndPicks, _picks, (2, 16), [(1, 9), (3, 5)]),
    "pad_modes": (PadModes, lambda b, h, w: (torch.randn(b, 3, h, w),), (2, 6, 7), [(1, 4, 3), (3, 5, 9)]),
    "weight_norm_cdist": (WeightNormCdist, lambda b, n: (torch.randn(b, 4, n),), (2, 9), [(1, 5), (3, 13)]),
    "transposed_convs": (TransposedConvs, lambda b, h, w: (torch.randn(b, 4, h, w),), (2, 6, 5), [(1, 3, 7), (3, 5, 4)]),
    "pad_to_windows": (PadToWindows, lambda b, h, w: (torch.randn(b, 3, h, w),), (2, 10, 12), [(1, 7, 14), (3, 9, 5)]),
    "adaptive_pools": (AdaptivePools, lambda b, h, w: (torch.randn(b, 4, h, w),), (2, 9, 12), [(1, 5, 6), (3, 13, 4)]),
    "ceil_mode_pools": (CeilModePools, lambda b, h, w: (torch.randn(b, 4, h, w),), (2, 9, 12), [(1, 7, 8), (3, 13, 5)]),
    "roll_fmod": (RollFmod, lambda b, h, w: (torch.randn(b, 3, h, w),), (2, 6, 5), [(1, 1, 3), (3, 7, 2)]),
    "avg_pools": (AvgPools, lambda b, h, w: (torch.randn(b, 4, h, w),), (2, 12, 10), [(1, 7, 9), (3, 5, 4)]),
}


def check_case(name: str, config: blade.Config, dtype=torch.float32, atol=1e-5, rtol=1e-5, device="cpu",
               variants: int = 1):
    factory, make, first, others = CASES[name]
    model = factory().eval().to(device=device, dtype=dtype)

    def cast(xs):
        return tuple((x.to(dtype) if x.is_floating_point() else x).to(device) for x in xs)

    torch.manual_seed(0)
    opt = blade.optimize(model, cast(make(*first)), config=config)
    assert not opt.report.unsupported, opt.report.unsupported
    for i, size in enumerate([first] + others):
        torch.manual_seed(i + 1)
        xs = cast(make(*size))
        with torch.no_grad():
            got, want = opt(*xs), model(*xs)
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{name} {size}: {m}")
    assert len(opt.variants) <= variants, f"{name}: {len(opt.variants)} variants"
    assert opt.eager_calls == 0
    return opt


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_and_equal_to_eager(name):
    check_case(name, blade.Config())


def test_variance_in_half_precision_accumulates_in_float32():
    check_case("variance", blade.Config(), dtype=torch.float16, atol=2e-3, rtol=2e-3)


def test_joint_sequence_guard_is_checked():
    """Lengths that break the equality: eager's own broadcast error, never a silent answer."""
    opt = check_case("joint_sequence", blade.Config())
    with pytest.raises(RuntimeError, match="must match the size"):
        opt(*_joint(2, 2, 2)[:2], torch.randn(2, 8), torch.randn(3, 8))
    guards = [o.properties["cond"].data for o in opt.report.module.walk() if o.name == "blade.guard"]
    assert any("==" in g for g in guards), guards


def test_floor_division_by_a_sum_cancels():
    """torch's ``FloorDiv(4*s0 + 4*s1, s0 + s1)`` is 4 for Blade too (Flux's rotary width); a
    quotient that does not cancel stays a floor."""
    import sympy

    from blade.frontend.torch_symbols import _BINARY

    a, b = sympy.symbols("s0 s1", integer=True, positive=True)
    assert _BINARY["FloorDiv"](4 * a + 4 * b, a + b) == 4
    assert _BINARY["CeilDiv"](6 * a + 6 * b, 2 * a + 2 * b) == 3
    assert isinstance(_BINARY["FloorDiv"](4 * a + 3, a + b), sympy.floor)
    assert _BINARY["FloorDiv"](a, 2) == sympy.floor(a / 2)


def test_circular_padding_and_its_size_limit():
    """Circular padding is compiled too (torch's own export of it splits batch 1 and channel 1
    into classes of their own, so no variant count here); a reflection pad as large as the dim gets
    eager's error."""

    class Circular(torch.nn.Module):
        def forward(self, x):
            return F.pad(x, (2, 1, 0, 3), mode="circular")

    model = Circular()
    opt = blade.optimize(model, (torch.randn(2, 3, 6, 7),))
    assert not opt.report.unsupported
    for s in [(2, 3, 6, 7), (1, 2, 4, 3), (3, 1, 5, 9)]:
        x = torch.randn(*s)
        assert torch.equal(opt(x), model(x))
    reflect = blade.optimize(PadModes(), (torch.randn(2, 3, 6, 7),))
    with pytest.raises(RuntimeError, match="Padding size should be less than"):
        reflect(torch.randn(1, 3, 2, 2))


def test_fused_rms_norm_lowered_directly():
    """``aten._fused_rms_norm`` as CUDA's ``rms_norm`` leaves it (no decomposition at all, as
    under torch 2.11 on the GPU): Blade lowers it itself, equal to the op, with and without weight
    and eps, in half precision too (float32 inside)."""
    class Fused(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(4, 8))

        def forward(self, x):
            op = torch.ops.aten._fused_rms_norm.default
            return op(x, [8], self.w[0], 1e-6)[0], op(x, [4, 8], self.w, None)[0], op(x, [8], None, 1e-5)[1]

    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
        model = Fused().to(dtype)
        opt = blade.optimize(model, (torch.randn(2, 5, 4, 8, dtype=dtype),))
        assert not opt.report.unsupported, opt.report.unsupported
        targets = {n.target for n in opt.variants[0].program.ep.graph.nodes}
        assert torch.ops.aten._fused_rms_norm.default in targets  # imported whole, not decomposed
        for b, n in ((1, 3), (3, 7)):
            x = torch.randn(b, n, 4, 8, dtype=dtype)
            for g, e in zip(opt(x), model(x)):
                torch.testing.assert_close(g, e, atol=tol, rtol=tol)
        assert len(opt.variants) == 1
