"""A 1-D ``iota`` (``torch.arange``) inside a generated kernel (``fuse-stitch`` starts a pointwise
group with it, ``codegen/emit.py`` computes it from the element index): timestep embeddings,
positions, scaled and shifted ranges, in float and integer dtypes, at dynamic lengths including 1,
run by the kernel executor and as Programs, the kernels under Triton's CPU interpreter, and
compared with eager. No
``iota`` is left as a library call (each was a Python step of the C++ step loop, ~100 us of host
time per call on the GPU machine)."""

import math

import pytest
import torch

import blade


class TimestepEmbedding(torch.nn.Module):
    """diffusers' ``get_timestep_embedding`` (flip_sin_to_cos, shift 1) added to an activation."""

    def forward(self, t, x):
        half = x.shape[-1] // 2
        exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
        emb = t[:, None].float() * torch.exp(exponent / (half - 1))[None, :]
        emb = torch.cat([torch.cos(emb), torch.sin(emb)], dim=-1)
        return x + emb.to(x.dtype)


class Positions(torch.nn.Module):
    """Integer positions with a start and a step, a float range, and a mask built from positions."""

    def forward(self, x):
        n = x.shape[1]
        pos = torch.arange(3, 3 + 2 * n, 2, device=x.device)          # int64, start 3, step 2
        ramp = torch.arange(n, dtype=x.dtype, device=x.device) * 0.5 - 1.0
        keep = torch.arange(n, device=x.device) < (n // 2 + 1)
        y = x * ramp[None, :, None] + pos[None, :, None].to(x.dtype)
        return torch.where(keep[None, :, None], y, -y), pos * pos + 1


def _library_iotas(opt):
    """The iotas left outside kernels: library calls of a Program, ops of the kernel executor's IR."""
    if hasattr(opt.variants[0].executor, "program"):
        return [s for v in opt.variants for s in v.executor.program.steps
                if s.kind == "library_call" and s.op == "iota"]
    return [op for op in opt.report.module.walk() if op.name == "blade.iota" and op.parent_op().name != "blade.fused"]


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_timestep_embedding(dtype, executor):
    m = TimestepEmbedding()
    opt = blade.optimize(m, [torch.tensor([3.0, 981.0]), torch.randn(2, 320, dtype=dtype)],
                         config=blade.Config(executor=executor))
    for b, c in [(2, 320), (1, 14), (3, 9 * 2), (2, 4)]:
        t = torch.rand(b) * 1000
        x = torch.randn(b, c, dtype=dtype)
        got, want = opt(t, x), m(t, x)
        assert got.dtype == want.dtype and got.shape == want.shape
        # the angles reach 1000 rad: float32 rounding of the frequency moves them by ~1e-4
        torch.testing.assert_close(got.float(), want.float(), atol=2e-3 if dtype == torch.float32 else 2e-2, rtol=0)
    assert not _library_iotas(opt)


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_positions_and_ranges(dtype, executor):
    m = Positions()
    opt = blade.optimize(m, [torch.randn(2, 7, 5, dtype=dtype)], config=blade.Config(executor=executor))
    for shape in [(2, 7, 5), (1, 1, 3), (3, 13, 2), (2, 64, 8)]:
        x = torch.randn(*shape, dtype=dtype)
        got, want = opt(x), m(x)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            torch.testing.assert_close(g, w, atol=0 if not w.is_floating_point() else 1e-2, rtol=1e-3)
    assert not _library_iotas(opt)
