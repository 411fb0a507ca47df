"""Row addressing of generated kernels, proven rather than assumed (issue 8, item 1), on Triton's
CPU interpreter: inputs that reach a kernel as views (a ``[B, H*W, C]`` GEMM output reshaped to
``[B, H, W, C]``, permutes, channel slices), broadcasts along non-contiguous dims, size-1 dims at
every position; the launch-time shape check; and ``Config(bounds_check=True)`` catching a forged
address on the device side.

The SD 2.x illegal memory access came from two groups sharing one kernel source (an ``add`` over
``[B, L, C]`` and one over ``[B, H, W, C]``): the launcher was shared too and addressed the rank-4
inputs with the rank-3 group's row dims. ``test_one_source_two_ranks`` is that case.
"""

import pytest
import torch
import torch.nn.functional as F

import blade
from blade.codegen.emit import plan_kernel
from blade.dialects.kernel import FusedOp
from blade.executors import launch

KERNELS = blade.Config(executor="kernels", check_shapes=True)


def _check(model, make, sizes, config=KERNELS):
    model = model.eval()
    opt = blade.optimize(model, make(*sizes[0]), config=config)
    for size in sizes:
        inputs = make(*size)
        with torch.no_grad():
            out, ref = opt(*inputs), model(*inputs)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert opt.variants[0].program.launch_stats.launches > 0
    return opt


def _plans(opt):
    return [plan_kernel(op) for op in opt.report.module.walk() if isinstance(op, FusedOp)]


class LinearProjection(torch.nn.Module):
    """The SD 2.x transformer with ``use_linear_projection``: NHWC conv output -> [B, H*W, C] ->
    linear + residual (an ``add`` over [B, L, C]) -> linear -> [B, H, W, C] -> + the conv output
    (an ``add`` over [B, H, W, C], the same kernel source)."""

    def __init__(self, c=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.proj_in = torch.nn.Linear(c, c)
        self.proj_out = torch.nn.Linear(c, c)

    def forward(self, x):
        b, c, h, w = x.shape
        r = self.conv(x)
        t = r.permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.proj_in(t) + t
        y = self.proj_out(t).reshape(b, h, w, c).permute(0, 3, 1, 2).contiguous()
        return y + r


def test_one_source_two_ranks():
    opt = _check(LinearProjection(), lambda b, h, w: (torch.randn(b, 8, h, w),), [(2, 6, 6), (1, 9, 13), (3, 5, 1)])
    adds = [p for p in _plans(opt) if p.label == "add"]
    assert sorted(p.rank for p in adds) == [3, 4], [(p.name, p.rank) for p in adds]
    assert len({p.source for p in adds}) == 1  # one source, compiled once, addressed per group


def test_a_launch_on_tensors_the_plan_does_not_describe_is_an_error():
    opt = _check(LinearProjection(), lambda b, h, w: (torch.randn(b, 8, h, w),), [(2, 4, 4)])
    program = opt.variants[0]
    launcher = next(lch for lch in program.executor.launchers.values() if lch.plan.rank == 3)
    x = torch.randn(2, 4, 4, 8)  # rank 4 where the plan says [B, L, C]
    with pytest.raises(launch.KernelLaunchError, match=r"input 0 has rank 4 \(shape \(2, 4, 4, 8\)\).*rank-3 input"):
        launcher([x, x], (2, 4, 4, 8))
    with pytest.raises(launch.KernelLaunchError, match=r"input 1 has shape \(2, 1, 8\).*\(2, 16, 8\)"):
        launcher([torch.randn(2, 16, 8), torch.randn(2, 1, 8)], (2, 16, 8))  # a broadcast the plan lacks
    with pytest.raises(launch.KernelLaunchError, match="reads it as f32"):
        launcher([torch.randn(2, 16, 8), torch.randn(2, 16, 8, dtype=torch.float64)], (2, 16, 8))


class Views(torch.nn.Module):
    """Inputs that are views: a transpose, a channel slice (row stride 2C), a permute of a
    channels-first tensor (last dim strided), broadcasts along non-contiguous dims."""

    def forward(self, x, t, wide, nchw, gap, per_w):
        # x [B, H, W, C]; t [B, W, H, C]; wide [B, H, W, 2C]; nchw [B, C, H, W]; gap [B, 1, W, C] as
        # [B, W, C]; per_w [W] as [W, 1] (varies along W only, constant along C)
        c = x.shape[-1]
        a = x + t.transpose(1, 2) * wide[..., c:] - wide[..., :c]
        return torch.tanh(a + nchw.permute(0, 2, 3, 1)) * gap[:, None] + per_w[:, None]


def test_views_slices_permutes_and_gapped_broadcasts():
    def make(b, h, w, c=5):
        return (torch.randn(b, h, w, c), torch.randn(b, w, h, c), torch.randn(b, h, w, 2 * c),
                torch.randn(b, c, h, w), torch.randn(b, w, c), torch.randn(w))

    channels = blade.Config(executor="kernels", check_shapes=True,  # channel slices need static channels
                            static_dims={"x": [3], "t": [3], "wide": [3], "nchw": [1], "gap": [2]})
    _check(Views(), make, [(2, 3, 4), (1, 1, 7), (3, 6, 1)], config=channels)


class UnitDims(torch.nn.Module):
    """Size-1 dims at every position of the iteration space, in inputs and in the space itself."""

    def forward(self, x, a, b, c, d):
        # x [N, H, W, C]; a [N, C] -> [N, 1, 1, C]; b [H, C] -> [1, H, 1, C]; c [N, H, W] -> [N, H, W, 1]
        return (x * a[:, None, None] + b[None, :, None]) * c[..., None] - d


@pytest.mark.parametrize("shape", [(1, 4, 5, 6), (3, 1, 5, 6), (3, 4, 1, 6), (3, 4, 5, 1), (1, 1, 1, 1)])
def test_size_one_dims_at_every_position(shape):
    def make(*s):
        n, h, w, c = s
        return (torch.randn(n, h, w, c), torch.randn(n, c), torch.randn(h, c), torch.randn(n, h, w),
                torch.randn(h, w, c))

    # compiled at a size-1-free shape, called with the size-1 shape (dims stay symbolic), and back
    _check(UnitDims(), make, [(2, 3, 4, 7), shape, (2, 5, 3, 7)])


def test_bounds_check_passes_a_normal_model_and_catches_a_forged_stride(monkeypatch):
    # strict: a compiled run that fails raises (by default the call is answered eagerly, loudly)
    cfg = blade.Config(executor="kernels", check_shapes=True, bounds_check=True, fallback="strict")
    opt = _check(LinearProjection(), lambda b, h, w: (torch.randn(b, 8, h, w),), [(2, 4, 4), (1, 3, 5)], config=cfg)
    plans = _plans(opt)
    assert all("tl.device_assert" not in p.source for p in plans)
    checked = [lch.plan for lch in opt.variants[0].executor.launchers.values()]
    assert checked and all(p.bounds_check and "tl.device_assert" in p.source for p in checked)
    assert {p.name for p in plans}.isdisjoint(p.name for p in checked)  # other kernels, other cache entries

    # forge the row stride, and switch off the host-side reach check, so only the device checks remain
    real = launch._collapsed_stride
    monkeypatch.setattr(launch, "_collapsed_stride", lambda t, dims: None if real(t, dims) is None
                        else 3 * real(t, dims) + 1)
    monkeypatch.setattr(launch, "_check_linear_reach", lambda *a: None)
    with pytest.raises(Exception, match="offset outside its tensor"):
        with torch.no_grad():
            opt(torch.randn(2, 8, 4, 4))


def test_program_bounds_check_passes_a_normal_model_and_catches_a_forged_stride(monkeypatch):
    """``Config(executor="program", bounds_check=True)``: the Program's kernels carry the offset
    assertions (the runtime's ``KernelRunner`` passes each tensor's element span), a normal model
    runs through them, and a forged row stride stops the call naming the offset. The Program
    runtime has no host-side reach check: only the device assertion stands between a wrong
    stride and a wild access."""
    from blade.executors.program_backed import ProgramBackedExecutor
    from blade.runtime import kernel_runner

    cfg = blade.Config(executor="program", check_shapes=True, bounds_check=True, fallback="strict")
    model = LinearProjection().eval()
    opt = blade.optimize(model, (torch.randn(2, 8, 4, 4),), config=cfg)
    for b, h, w in [(2, 4, 4), (1, 3, 5), (3, 5, 2)]:
        x = torch.randn(b, 8, h, w)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), model(x), atol=1e-4, rtol=1e-4)
    executor = opt.variants[0].executor
    assert isinstance(executor, ProgramBackedExecutor)
    kernels = executor.program.kernels.values()
    assert kernels and all(k["bounds_check"] for k in kernels)
    assert all("tl.device_assert" in executor.program.blobs[k["source"]].decode() for k in kernels)

    real = kernel_runner._collapsed_stride
    monkeypatch.setattr(kernel_runner, "_collapsed_stride", lambda t, dims: None if real(t, dims) is None
                        else 3 * real(t, dims) + 1)
    with pytest.raises(Exception, match="offset outside its tensor"):
        with torch.no_grad():
            opt(torch.randn(2, 8, 6, 3))  # a new size: its launches resolve their strides again


def test_the_host_side_reach_check_catches_a_forged_stride(monkeypatch):
    strict = blade.Config(executor="kernels", check_shapes=True, fallback="strict")  # run errors raise
    opt = _check(LinearProjection(), lambda b, h, w: (torch.randn(b, 8, h, w),), [(2, 4, 4)], config=strict)
    real = launch._collapsed_stride
    monkeypatch.setattr(launch, "_collapsed_stride", lambda t, dims: None if real(t, dims) is None
                        else 2 * real(t, dims))
    with pytest.raises(launch.KernelLaunchError, match="past its last element"):
        with torch.no_grad():
            opt(torch.randn(2, 8, 4, 4))


class GroupNormInputs(torch.nn.Module):
    """A GroupNorm kernel whose prologue reads a [B, H*W, C] linear output reshaped to NHWC."""

    def __init__(self, c=8):
        super().__init__()
        self.lin = torch.nn.Linear(c, c)
        self.norm = torch.nn.GroupNorm(2, c)
        self.conv = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        r = self.conv(x)
        y = self.lin(r.permute(0, 2, 3, 1).reshape(b, h * w, c)).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return F.silu(self.norm(y + r))


def test_group_norm_prologue_reads_a_reshaped_linear_output():
    _check(GroupNormInputs(), lambda b, h, w: (torch.randn(b, 8, h, w),), [(2, 4, 6), (1, 9, 13), (3, 2, 1)])
