"""tests/unit/test_op_coverage.py's modules on the GPU (skipped without CUDA): generated Triton
kernels compiled for the device (rounding, sign, exp2/log2, NaN tests, index gathers for padding
and flips, window sums) through the kernel executor and the Program executor, in float32 and in
float16 against eager float16."""

import copy

import pytest
import torch

import blade
from tests.unit.test_op_coverage import CASES, check_case

pytestmark = pytest.mark.gpu


def _variants(name: str) -> int:
    """torch 2.11's export guards average pooling's input sizes by parity (``2*s2``, ``2*s3 - 1``),
    where 2.13's does not: the odd sizes of the case then compile a variant each (correct, and
    measured with torch 2.11: avg_pools 3 variants on an H200, ceil_mode_pools 2 on an H100, its
    odd width guarded by ``2*s3``); one variant everywhere else."""
    old = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13)
    return {"avg_pools": 3, "ceil_mode_pools": 2}.get(name, 1) if old else 1


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gpu_kernels_equal_eager(name, executor):
    config = blade.Config(executor=executor, check_shapes=True)
    opt = check_case(name, config, atol=1e-4, rtol=1e-4, device="cuda", variants=_variants(name))
    if executor == "kernels":
        assert opt.variants[0].program.launch_stats.launches > 0


# weight_norm_cdist: eager has no half-precision cdist on CUDA; scale_from_sizes rounds 3x, where
# values at a rounding boundary differ by 1 between two fp16 paths
@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("name", sorted(set(CASES) - {"scale_from_sizes", "weight_norm_cdist"}))
def test_gpu_half_precision(name, executor):
    """float16 against eager float16; where an output differs past the tolerance (a discontinuous
    op, ``fmod`` or a truncation to int, at a value that one path's rounding puts on the other side
    of a step: a fused kernel keeps ``x * 7`` in float32 where eager rounds it to float16), the
    brief's bar decides: the error against the float32 model on the same inputs at most twice
    eager float16's, plus the tolerance."""
    factory, make, first, others = CASES[name]
    torch.manual_seed(0)
    model = factory().eval().to("cuda")
    half = copy.deepcopy(model).half()

    def cast(xs):
        return tuple((x.half() if x.is_floating_point() else x).cuda() for x in xs)

    torch.manual_seed(0)
    opt = blade.optimize(half, cast(make(*first)), config=blade.Config(executor=executor))
    assert not opt.report.unsupported, opt.report.unsupported
    for i, size in enumerate([first] + others):
        torch.manual_seed(i + 1)
        xs = cast(make(*size))
        with torch.no_grad():
            got, want = _tuple(opt(*xs)), _tuple(half(*xs))
            reference = _tuple(model(*(x.float() if x.is_floating_point() else x for x in xs)))
        assert len(got) == len(want) == len(reference)
        for k, (g, w, r) in enumerate(zip(got, want, reference)):
            assert g.dtype == w.dtype and g.shape == w.shape, f"{name} {size} output {k}: {g.dtype} {g.shape}"
            if torch.allclose(g.double(), w.double(), atol=2e-2, rtol=2e-2, equal_nan=True):
                continue
            mine, eager = _error(g, r), _error(w, r)
            assert mine <= 2 * eager + 2e-2, f"{name} {size} output {k}: error {mine:.3g}, eager float16's {eager:.3g}"
    assert len(opt.variants) <= _variants(name), f"{name}: {len(opt.variants)} variants"


def _error(out: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest absolute difference; equal values (infinities too) and NaN where the reference
    has NaN count 0, a NaN anywhere else counts infinite."""
    a, r = out.double(), reference.double()
    d = torch.where((a == r) | (a.isnan() & r.isnan()), 0.0, (a - r).abs())
    return d.nan_to_num(nan=float("inf")).max().item() if d.numel() else 0.0


def _tuple(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
