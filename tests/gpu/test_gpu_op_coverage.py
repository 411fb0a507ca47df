"""tests/unit/test_op_coverage.py's modules on the GPU (skipped without CUDA): generated Triton
kernels compiled for the device (rounding, sign, exp2/log2, NaN tests, index gathers for padding
and flips, window sums) through the kernel executor and the Program executor, in float32 and in
float16 against eager float16."""

import pytest
import torch

import blade
from tests.unit.test_op_coverage import CASES, check_case

pytestmark = pytest.mark.gpu


def _variants(name: str) -> int:
    """torch 2.11's export guards average pooling's input sizes by parity (``2*s2``, ``2*s3 - 1``),
    where 2.13's does not: the odd sizes of the case then compile a variant each (correct, and
    measured on an H200 with torch 2.11); one variant everywhere else."""
    old = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) < (2, 13)
    return 3 if name == "avg_pools" and old else 1


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
    check_case(name, blade.Config(executor=executor), dtype=torch.float16, atol=2e-2, rtol=2e-2, device="cuda",
               variants=_variants(name))
