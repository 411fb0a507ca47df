"""``torch.autocast`` and grad-mode regions, around a call and inside ``forward``.

A call under ``torch.autocast`` computes its matmuls and convolutions in the autocast dtype in
eager PyTorch, and returns tensors of that dtype. A compiled module must do the same: the autocast
regions a call runs in are part of its call signature, and a variant for them is traced entered
into them (its casts are ops of the program). Regions entered inside ``forward`` (``torch.autocast``,
``torch.no_grad``, ``torch.enable_grad``) are inlined at capture, so their ops compile instead of
running in eager PyTorch.

Checked on generated networks (``tests/generated/netgen.py``) under CPU autocast in bfloat16 and
float16: every output has eager's dtype and shape, and its error against the float32 model is at
most twice eager autocast's own plus the network's tolerance; and on modules built from every
combination of regions inside ``forward``. The same through the Program executor (the CUDA
default) with generated kernels, and saved artifacts: ``tests/kernels/test_autocast_program.py``.
"""

import itertools

import pytest
import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree

import blade
from blade.runtime.call_signature import autocast_scope, autocast_state
from tests.generated.netgen import generate

SEEDS = range(24)
DTYPES = [torch.bfloat16, torch.float16]


def _leaves(out):
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def _check_against_eager(net, got, under_autocast, reference, dtype) -> int:
    """Every output: eager autocast's shape and dtype, and an error against the float32 model at
    most twice eager autocast's, plus one rounding in the autocast ``dtype``, plus the network's
    tolerance. The rounding: Blade adds a convolution's bias in the kernel that reads the
    convolution, after the convolution rounded its result to the autocast dtype (as eager PyTorch
    does on CUDA, where cuDNN's bias is a separate add); oneDNN, eager's CPU convolution, adds it
    before rounding. That rounding reaches outputs of any dtype (a bfloat16 convolution divided by
    a float32 parameter is float32). Returns how many outputs autocast made a lower-precision dtype
    (a test over networks autocast never touched proves nothing)."""
    got, want, ref = _leaves(got), _leaves(under_autocast), _leaves(reference)
    assert len(got) == len(want) == len(ref)
    lowered = 0
    for i, (g, w, r) in enumerate(zip(got, want, ref)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"output {i}: {g.shape} {g.dtype}, eager {w.shape} {w.dtype}"
        if not w.is_floating_point():
            assert torch.equal(g, w), f"output {i}: integer output differs from eager's"
            continue
        lowered += w.dtype != r.dtype
        r32 = r.double()
        scale = max(1.0, r32.abs().max().item()) if r.numel() else 1.0
        eager_err = (w.double() - r32).abs().max().item() if r.numel() else 0.0
        err = (g.double() - r32).abs().max().item() if r.numel() else 0.0
        rounding = torch.finfo(dtype).eps * scale
        bar = 2 * eager_err + rounding + net.tolerance(i) * scale
        assert err <= bar, f"output {i} {tuple(r.shape)}: error {err:.3e} against float32, eager autocast's " \
                           f"{eager_err:.3e} (bar {bar:.3e})"
    return lowered


#: known bugs under autocast, by a construct in the network's source: networks holding one are
#: skipped by ``check_generated_under_autocast`` (the entry goes when the bug is fixed). None now:
#: F.pad reflect/replicate under CPU autocast (float32 in eager) was one until session 17
#: (``frontend/export._CpuAutocastFloat32Pads``).
KNOWN_AUTOCAST_BUGS: dict[str, str] = {}
#: the same under ``torch.autocast("cuda")`` (tests/gpu/test_gpu_calls.py), skipped there only
KNOWN_CUDA_AUTOCAST_BUGS: dict[str, str] = {
    ".mul_(0.5)": "generated seed 67 writes ``t.mul_(0.5)`` into an input whose int-sliced transpose it also "
                  "returns; under torch.autocast('cuda') blade.optimize's torch.export capture raises "
                  "PendingUnbackedSymbolNotFound and the module runs eagerly (session 21, H100). On the CPU, "
                  "autocast('cuda') over CPU tensors compiles it; not yet reproduced without a GPU.",
}


def check_generated_under_autocast(seeds, device: str, dtype: torch.dtype, config=None, calls: int = 1) -> None:
    """Each generated network (``seeds``) compiled under ``torch.autocast(device, dtype)`` and called
    ``calls`` times at every probe (a second call replays a CUDA graph) inside the same autocast:
    ``_check_against_eager``'s bar, no call answered eagerly, and autocast lowering at least half as
    many outputs as there are networks."""
    lowered, checked = 0, 0
    for seed in seeds:
        net = generate(seed)
        if device == "cpu" and any(construct in net.source() for construct in KNOWN_AUTOCAST_BUGS):
            continue
        if device == "cuda" and any(construct in net.source() for construct in KNOWN_CUDA_AUTOCAST_BUGS):
            continue
        checked += 1
        model, make = net.build()
        model = model.to(device)

        def inputs_for(probe, s):
            return tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in make(**probe, seed=s))

        with torch.autocast(device, dtype=dtype):
            opt = blade.optimize(model, inputs_for(net.probes[0], 100), config=config)
        assert opt.variants, f"seed {seed}: not compiled under autocast"
        assert all(v.signature.autocast == ((device, dtype),) for v in opt.variants)
        for p, probe in enumerate(net.probes * calls):
            # each call its own copy: a generated network may write into an input in place
            inputs = [inputs_for(probe, p + 1) for _ in range(3)]
            with torch.no_grad():
                reference = model(*inputs[0])
                with torch.autocast(device, dtype=dtype):
                    want, got = model(*inputs[1]), opt(*inputs[2])
            try:
                lowered += _check_against_eager(net, got, want, reference, dtype)
            except AssertionError as e:
                raise AssertionError(f"generator seed {seed}, probe {probe}: {e}\n{net.source()}") from None
        assert opt.eager_calls == 0, f"seed {seed}: {opt.eager_calls} calls answered eagerly"
    assert checked >= len(seeds) * 3 // 4, f"only {checked} of {len(seeds)} networks checked"
    assert lowered >= checked // 2, f"only {lowered} outputs came out in {dtype}: the networks miss autocast ops"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_generated_networks_under_autocast_match_eager_autocast(dtype):
    check_generated_under_autocast(SEEDS, "cpu", dtype)


class _Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 16)
        self.b = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.b(F.gelu(self.a(x))) * 2  # under autocast: a bfloat16 result


def test_entering_and_leaving_autocast_selects_the_matching_variant(capfd):
    torch.manual_seed(0)
    model = _Mlp().eval()
    x = torch.randn(3, 7, 6)
    opt = blade.optimize(model, (x,))
    capfd.readouterr()
    with torch.no_grad():
        for shape in [(3, 7, 6), (1, 5, 6), (2, 9, 6)]:
            x = torch.randn(*shape)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got, want = opt(x), model(x)
            assert got.dtype == want.dtype == torch.bfloat16
            torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
            got, want = opt(x), model(x)  # out of it again: float32, as before
            assert got.dtype == torch.float32
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            with torch.autocast("cpu", dtype=torch.bfloat16), torch.autocast("cpu", enabled=False):
                assert opt(x).dtype == torch.float32  # a region that turns it off again: off
    assert len(opt.variants) == 2 and opt.eager_calls == 0
    assert [v.signature.autocast for v in opt.variants] == [(), (("cpu", torch.bfloat16),)]
    err = capfd.readouterr().err
    assert "torch.autocast is cpu bfloat16 at the call, off in the compiled variant" in err
    assert "traced under torch.autocast (cpu bfloat16)" in opt.variants[1].program.report.format()


def test_autocast_state_and_scope_round_trip():
    assert autocast_state() == ()
    with torch.autocast("cpu", dtype=torch.float16):
        state = autocast_state()
        assert state == (("cpu", torch.float16),)
        with autocast_scope(()):
            assert autocast_state() == ()
        with autocast_scope((("cpu", torch.bfloat16),)):
            assert autocast_state() == (("cpu", torch.bfloat16),)
        assert autocast_state() == state
    with autocast_scope(state):
        assert autocast_state() == state
    assert autocast_state() == ()


#: context managers a forward may enter; each region computes one linear + activation
REGIONS = {
    "no_grad": lambda: torch.no_grad(),
    "enable_grad": lambda: torch.enable_grad(),
    "autocast_bf16": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    "autocast_fp16": lambda: torch.autocast("cpu", dtype=torch.float16),
    "autocast_off": lambda: torch.autocast("cpu", enabled=False),
}


class _Regions(torch.nn.Module):
    """linear -> [outer region: linear, silu, [inner region: matmul with a weight]] -> residual add
    in float32 (the regions' results cast back where autocast lowered them)."""

    def __init__(self, outer: str, inner: str):
        super().__init__()
        self.outer, self.inner = outer, inner
        self.a = torch.nn.Linear(8, 12)
        self.b = torch.nn.Linear(12, 12)
        self.w = torch.nn.Parameter(torch.randn(12, 8) / 4)

    def forward(self, x):
        h = self.a(x)
        with REGIONS[self.outer]():
            y = F.silu(self.b(h))
            with REGIONS[self.inner]():
                z = y @ self.w.to(y.dtype) if self.inner == "autocast_off" else y @ self.w
        return z.float() + x


@pytest.mark.parametrize("outer,inner", list(itertools.product(REGIONS, repeat=2)))
def test_regions_inside_forward_compile_and_match_eager(outer, inner):
    torch.manual_seed(1)
    model = _Regions(outer, inner).eval()
    opt = blade.optimize(model, (torch.randn(4, 6, 8),))
    assert not opt.report.unsupported, [u.target for u in opt.report.unsupported]
    for shape in [(4, 6, 8), (1, 3, 8), (3, 11, 8)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            got, want = opt(x), model(x)
        low = any(k.startswith("autocast_") and k != "autocast_off" for k in (outer, inner))
        torch.testing.assert_close(got, want, rtol=3e-2 if low else 1e-5, atol=3e-2 if low else 1e-5)
    assert opt.eager_calls == 0 and len(opt.variants) == 1


def test_torchscript_frontend_under_autocast_runs_eagerly_and_says_why(capfd):
    torch.manual_seed(2)
    model = _Mlp().eval()
    x = torch.randn(2, 3, 6)
    opt = blade.optimize(model, (x,), config=blade.Config(frontend="torchscript"))
    assert opt.variants
    capfd.readouterr()
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        got, want = opt(x), model(x)
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    assert opt.eager_calls == 1
    err = capfd.readouterr().err
    assert "captures autocast regions through torch.export only" in err


def test_precompiled_neighbours_keep_the_examples_autocast():
    torch.manual_seed(3)
    model = _Mlp().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        opt = blade.optimize(model, (torch.randn(2, 7, 6),), config=blade.Config(precompile_guard_classes=2))
    assert opt.wait_precompiled(300)
    assert all(v.signature.autocast == (("cpu", torch.bfloat16),) for v in opt.variants)


class Pads(torch.nn.Module):
    def forward(self, x):
        y = x @ x.transpose(-1, -2)  # the autocast dtype
        return (F.pad(y, (1, 2), mode="reflect") + 1, torch.nn.ReplicationPad2d((1, 0, 2, 1))(y[:, None]) * 2,
                F.pad(y[:, None], (2, 2, 1, 1), mode="reflect"), F.pad(y, (1, 1), mode="circular"), F.pad(y, (3, 0)),
                F.pad(x, (1, 1), mode="replicate"))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pads_under_cpu_autocast_compute_in_eagers_dtypes(dtype):
    """CPU autocast runs reflection and replication pads in float32 (their results, and what
    follows them, are float32 in eager); constant and circular pads stay in the autocast dtype."""
    model = Pads()
    with torch.autocast("cpu", dtype=dtype):
        opt = blade.optimize(model, (torch.randn(2, 4, 5),))
        for shape in [(2, 4, 5), (1, 7, 3), (3, 5, 6)]:
            x = torch.randn(*shape)
            for got, want in zip(opt(x), model(x)):
                assert got.dtype == want.dtype, (got.dtype, want.dtype)
                torch.testing.assert_close(got, want)
    assert opt.eager_calls == 0
