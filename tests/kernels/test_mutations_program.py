"""In-place writes to inputs and buffers through Programs (the generated kernels under Triton's
CPU interpreter) and the IR kernel executor: the cases of ``tests/unit/test_mutations.py``."""

import pytest

from tests.unit.test_mutations import run_cases


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_in_place_writes_compile(executor):
    run_cases(executor)
