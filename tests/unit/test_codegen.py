"""Generated source and kernel planning (no GPU, no interpreter needed)."""

import pytest
import torch

import blade
from blade.codegen.emit import plan_kernel
from blade.dialects.kernel import FusedOp
from blade.pipeline import kernel_config_key
from tests.kernels.test_generated import ResnetLike


def _plans(model, *inputs):
    opt = blade.optimize(model.eval(), inputs)
    return [plan_kernel(op) for op in opt.report.module.walk() if isinstance(op, FusedOp)]


def test_group_norm_source_is_readable_and_size_free():
    plans = _plans(ResnetLike(c=24, groups=4), torch.randn(2, 24, 6, 5), torch.randn(2, 8))
    gn = next(p for p in plans if p.kind == "group_norm")
    src = gn.source
    assert "# fused: add+add+group_norm+silu" in src  # conv bias + time embedding, norm, SiLU
    assert "def " + gn.name + "_stats(" in src and "def " + gn.name + "_apply(" in src
    assert "def " + gn.name + "_res(" in src  # the one-launch schedule
    assert sorted({v.constexprs["BLOCK_M"] for v in gn.variants if v.kernel.endswith("_res")}) == [
        512, 2048, 4096]  # 6 channels per group -> 8 lanes; tiles of 4096, 16384, 32768 elements
    assert "tl.atomic_add(counter" in src and "tl.sigmoid" in src
    assert "24" not in src.replace(gn.name, "")  # the channel count is a runtime argument / constant


def test_same_source_other_channels_get_their_own_launcher():
    a = next(p for p in _plans(ResnetLike(c=24, groups=4), torch.randn(2, 24, 6, 5), torch.randn(2, 8))
             if p.kind == "group_norm")
    b = next(p for p in _plans(ResnetLike(c=40, groups=4), torch.randn(2, 40, 6, 5), torch.randn(2, 8))
             if p.kind == "group_norm")
    assert a.name == b.name  # one source, compiled once per set of constants
    assert kernel_config_key(a) != kernel_config_key(b)
    assert {v.constexprs["CPG"] for v in a.variants} == {6}
    assert {v.constexprs["CPG"] for v in b.variants} == {10}


def test_bounds_checked_kernels_compile_for_sm90(tmp_path):
    """Config(bounds_check=True) kernels (device asserts, Triton debug mode) and the same kernels
    without checks compile to sm_90 cubins on a machine without a GPU; the checks are in the
    source, so the two are separate cache entries."""
    from blade.codegen.aot import compile_plans
    from tests.kernels.test_addressing import LinearProjection

    opt = blade.optimize(LinearProjection().eval(), (torch.randn(2, 8, 4, 4),))
    opt_gn = blade.optimize(ResnetLike(c=16, groups=4).eval(), (torch.randn(2, 16, 4, 4), torch.randn(2, 8)))
    fused = [op for o in (opt, opt_gn) for op in o.report.module.walk() if isinstance(op, FusedOp)]
    checked = [plan_kernel(op, bounds_check=True) for op in fused]
    plain = [plan_kernel(op) for op in fused]
    assert all("tl.device_assert" in p.source and all(v.debug for v in p.variants) for p in checked)
    assert all("tl.device_assert" not in p.source and not any(v.debug for v in p.variants) for p in plain)
    assert {p.name for p in checked}.isdisjoint(p.name for p in plain)
    gn = next(p for p in checked if p.kind == "group_norm")
    assert "n0" in gn.signature(gn.name + "_stats") and "nout0" not in gn.signature(gn.name + "_stats")
    unique = {kernel_config_key(p): p for p in checked + plain if p.kind != "group_norm" or p is gn}
    compile_plans(list(unique.values()), target=("cuda", 90, 32), root=tmp_path, jobs=2)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in unique.values():
        assert {v.kernel for v in plan.variants} <= cubins, plan.name


class MixedDtypes(torch.nn.Module):
    def forward(self, a, b, c):
        return a + b, a + c  # f32 + f32, and f32 + f16 (promoted to f32 in the kernel)


def test_groups_reading_other_dtypes_never_share_compiled_kernels():
    """Loads convert to the compute type, so the body of both adds is the same; their pointer
    types differ. Sharing one compiled kernel would read the f16 tensor through an *fp32 pointer,
    past its end."""
    p, q = _plans(MixedDtypes(), torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8).half())
    assert [s.dtype for s in p.inputs] != [s.dtype for s in q.inputs]
    assert p.name != q.name and kernel_config_key(p) != kernel_config_key(q)


def test_one_source_for_two_ranks_gets_a_launcher_per_group():
    """An add over [B, L, C] and one over [B, H, W, C] share a source (and compiled kernels), but
    each group's launcher addresses its inputs by its own plan: the SD 2.x illegal memory access."""
    from blade.codegen.aot import CompiledPlan
    from blade.executors.launch import KernelLauncher
    from tests.kernels.test_addressing import LinearProjection

    adds = [p for p in _plans(LinearProjection(), torch.randn(2, 8, 4, 4)) if p.label == "add"]
    assert sorted(p.rank for p in adds) == [3, 4] and adds[0].source == adds[1].source
    shared = CompiledPlan(adds[0])
    launchers = [KernelLauncher(shared, plan=p) for p in adds]
    assert [lch.plan.inputs for lch in launchers] == [p.inputs for p in adds]
    other = next(p for p in _plans(MixedDtypes(), torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8).half())
                 if p.inputs[1].dtype == "f16")
    with pytest.raises(ValueError, match="built from other source"):
        KernelLauncher(shared, plan=other)


def test_rounding_sign_and_nan_kernels_compile_for_sm90(tmp_path):
    """floor/ceil/trunc/round/sign/log2/exp2/isnan/isinf on floats and integers: the Triton
    expressions are checked on the interpreter (tests/kernels); here the real compiler takes them."""
    from blade.codegen.aot import compile_plans
    from tests.kernels.test_generated import Rounding

    plans = _plans(Rounding(), torch.randn(2, 12), torch.randint(-9, 9, (2, 12)))
    assert plans
    compile_plans(plans, target=("cuda", 90, 32), root=tmp_path, jobs=1)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in plans:
        assert {v.kernel for v in plan.variants} <= cubins, plan.name


def test_iota_kernels_compile_for_sm90(tmp_path):
    """Groups that start with a fused ``iota`` (no tensor input at all: the timestep embedding's
    iota * constant / constant -> exp) compile to sm_90 cubins, every variant."""
    from blade.codegen.aot import compile_plans
    from tests.kernels.test_fused_iota import Positions, TimestepEmbedding

    opts = [blade.optimize(TimestepEmbedding(), [torch.tensor([3.0, 981.0]), torch.randn(2, 320)]),
            blade.optimize(Positions(), [torch.randn(2, 7, 5, dtype=torch.float16)])]
    fused = [op for o in opts for op in o.report.module.walk()
             if isinstance(op, FusedOp) and op.p("ops").startswith("iota")]
    assert len(fused) >= 4, [op.p("ops") for op in fused]
    plans = {kernel_config_key(p): p for p in (plan_kernel(op) for op in fused)}
    assert any(not p.inputs for p in plans.values())  # a kernel that reads nothing
    compile_plans(list(plans.values()), target=("cuda", 90, 32), root=tmp_path, jobs=2)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in plans.values():
        assert {v.kernel for v in plan.variants} <= cubins, plan.name


def test_pow_with_a_tensor_exponent_compiles_for_sm90(tmp_path):
    """``a ** b`` of two tensors (and a RoPE table's ``10000 ** (arange / d)``) compiles to sm_90."""
    from blade.codegen.aot import compile_plans
    from tests.kernels.test_pow_kernels import Pow, Rope

    opts = [blade.optimize(Pow(), (torch.rand(6), torch.randn(6)), config=blade.Config(fallback="strict")),
            blade.optimize(Rope(), (torch.randn(2, 9, 8, dtype=torch.float16),), config=blade.Config(fallback="strict"))]
    fused = [op for o in opts for op in o.report.module.walk() if isinstance(op, FusedOp) and "pow" in op.p("ops")]
    plans = {kernel_config_key(p): p for p in (plan_kernel(op) for op in fused)}
    assert len(plans) >= 2 and all("tl.exp2" in p.source for p in plans.values())
    compile_plans(list(plans.values()), target=("cuda", 90, 32), root=tmp_path, jobs=2)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in plans.values():
        assert {v.kernel for v in plan.variants} <= cubins, plan.name


def test_row_gather_kernels_compile_for_sm90(tmp_path):
    """Groups with a row gather (token + position embeddings + LayerNorm in float16 with a token
    type, the pooled row, negative / int32 / strided-table picks), plain and bounds-checked,
    compile to sm_90 cubins, every variant."""
    from blade.codegen.aot import compile_plans
    from tests.kernels.test_gather_kernels import Picks, TextEmbeddings

    opts = [blade.optimize(TextEmbeddings(dtype=torch.float16, types=True).eval(), [torch.randint(0, 50, (2, 11))],
                           config=blade.Config(fallback="strict")),
            blade.optimize(Picks(), (torch.randn(6, 6, 5), torch.randint(-6, 6, (4,)), torch.randint(-6, 6, (4,)),
                                     torch.randint(0, 16, (2, 3))), config=blade.Config(fallback="strict"))]
    fused = [op for o in opts for op in o.report.module.walk() if isinstance(op, FusedOp) and "gather_rows" in op.p("ops")]
    assert len(fused) >= 5, [op.p("ops") for op in fused]
    plans = {kernel_config_key(p): p for op in fused for p in (plan_kernel(op), plan_kernel(op, bounds_check=True))}
    assert any(p.kind == "row_norm" for p in plans.values())
    assert all(any(s.form == "table" for s in p.inputs) for p in plans.values())
    compile_plans(list(plans.values()), target=("cuda", 90, 32), root=tmp_path, jobs=2)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in plans.values():
        assert {v.kernel for v in plan.variants} <= cubins, plan.name
