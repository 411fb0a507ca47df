"""``pow`` with a tensor exponent inside a generated kernel (``codegen/expressions.py``: ``_pow``):
every sign and special value of base and exponent against ``torch.pow``, float32 and float16, and
a rotary position embedding (``10000 ** (arange / d)``, as LLaMA-style models build it), which
used to make the whole module run in eager PyTorch ("pow with a non-constant exponent")."""

import itertools

import pytest
import torch

import blade

SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 3.0, -3.0, 2.5, -2.5, 10.0, 1e-3,
           float("inf"), float("-inf"), float("nan")]


class Pow(torch.nn.Module):
    def forward(self, a, b):
        return torch.pow(a, b) + 0, torch.pow(7.5, b), torch.pow(a, b * 2.0)


class Rope(torch.nn.Module):
    def forward(self, x):
        n, d = x.shape[-2], x.shape[-1]
        inv = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
        freqs = torch.outer(torch.arange(n, dtype=torch.float32, device=x.device), inv)
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
        x1, x2 = x[..., ::2], x[..., 1::2]
        return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


def _close(got, want, rtol):
    assert got.dtype == want.dtype and got.shape == want.shape
    g, w = got.double(), want.double()
    same = (g == w) | (torch.isnan(g) & torch.isnan(w)) | ((g - w).abs() <= rtol * w.abs())
    bad = (~same).nonzero()
    assert not len(bad), [(tuple(i.tolist()), g[tuple(i)].item(), w[tuple(i)].item()) for i in bad[:8]]


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_special_values_against_torch(dtype, executor):
    pairs = list(itertools.product(SPECIAL, SPECIAL))
    a = torch.tensor([p[0] for p in pairs], dtype=dtype)
    b = torch.tensor([p[1] for p in pairs], dtype=dtype)
    m = Pow()
    opt = blade.optimize(m, (a, b), config=blade.Config(executor=executor, fallback="strict"))
    rtol = 1e-5 if dtype == torch.float32 else 1e-3  # 2 ** (b log2 a): about |b log2 a| float32 ulps
    for x, y in [(a, b), (torch.rand(3, 7, dtype=dtype) * 4 - 2, torch.randn(3, 7, dtype=dtype).round()),
                 (torch.rand(5, dtype=dtype) * 30, torch.randn(5, dtype=dtype) * 3)]:
        for g, w in zip(opt(x, y), m(x, y)):
            _close(g, w, rtol)
    assert opt.eager_calls == 0


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rotary_embedding(dtype, executor):
    m = Rope()
    opt = blade.optimize(m, (torch.randn(2, 9, 8, dtype=dtype),), config=blade.Config(executor=executor))
    for shape in [(2, 9, 8), (1, 1, 8), (3, 17, 16), (2, 4, 9, 8)]:
        x = torch.randn(*shape, dtype=dtype)
        torch.testing.assert_close(opt(x), m(x), atol=1e-5 if dtype == torch.float32 else 2e-3, rtol=1e-4)
    assert opt.eager_calls == 0


class IntPow(torch.nn.Module):
    def forward(self, a, b, x):
        return torch.pow(a, b) * 2 + 1, x.relu() + 1


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_a_group_without_a_kernel_runs_its_ops_and_the_rest_compiles(executor):
    """An integer ``pow`` of two tensors has no kernel (``Unsupported``): its group goes back to its
    ops, named in the report, and runs through torch; the other group is still a kernel and the
    module is compiled, not sent to eager PyTorch (it used to be, whole)."""
    m = IntPow()
    a, b, x = torch.randint(-3, 5, (4, 3)), torch.randint(0, 4, (4, 3)), torch.randn(4, 3)
    opt = blade.optimize(m, (a, b, x), config=blade.Config(executor=executor, fallback="strict"))
    assert any("is not generated as a kernel (integer pow" in n for n in opt.report.notes), opt.report.notes
    groups = [op.p("ops") for op in opt.report.module.walk() if op.name == "blade.fused"]
    assert groups and not any("pow" in g for g in groups), groups
    for shape in [(4, 3), (1, 7), (3, 1)]:
        a, b, x = torch.randint(-3, 5, shape), torch.randint(0, 4, shape), torch.randn(shape)
        for g, w in zip(opt(a, b, x), m(a, b, x)):
            assert g.dtype == w.dtype and torch.equal(g, w)
    assert opt.eager_calls == 0
