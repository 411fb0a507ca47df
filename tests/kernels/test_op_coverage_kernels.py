"""tests/unit/test_op_coverage.py's modules through generated Triton kernels (interpreter)."""

import pytest

import blade
from tests.unit.test_op_coverage import CASES, check_case

KERNELS = blade.Config(executor="kernels", check_shapes=True, kernel_cache_dir=None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_kernels_equal_eager(name):
    opt = check_case(name, KERNELS, atol=1e-4, rtol=1e-4)
    assert opt.variants[0].program.launch_stats.launches > 0
