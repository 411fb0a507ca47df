"""tests/unit/test_op_coverage.py's modules through generated Triton kernels (interpreter): the
kernel executor, and the Program executor (the runtime's path: library calls of the torch
provider, launches from the Program's tables)."""

import pytest

import blade
from tests.unit.test_op_coverage import CASES, check_case


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_compiled_kernels_equal_eager(name, executor):
    config = blade.Config(executor=executor, check_shapes=True, kernel_cache_dir=None)
    opt = check_case(name, config, atol=1e-4, rtol=1e-4)
    if executor == "kernels":
        assert opt.variants[0].program.launch_stats.launches > 0
