"""Random networks through Blade's generated Triton kernels on Triton's CPU interpreter.

Not collected by the normal test run (the interpreter must be switched on before triton is
imported): tests/generated/test_random_networks.py runs this file in a subprocess with
``TRITON_INTERPRET=1``. Run it directly with

    TRITON_INTERPRET=1 python -m pytest -q tests/generated/interpreted_networks.py
"""

import os

import pytest

from tests.generated.test_random_networks import INTERPRETED_SEEDS, PROGRAM_SEEDS, run_seed

if os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (run through test_random_networks.py)", allow_module_level=True)


@pytest.mark.parametrize("seed", INTERPRETED_SEEDS)
def test_kernels_executor(seed):
    run_seed(seed, "kernels")


@pytest.mark.parametrize("seed", PROGRAM_SEEDS)
def test_program_executor(seed):
    """The same networks lowered to Programs and run by the runtime's Program executor (the CUDA
    default; here its generated kernels run in the interpreter, its library calls in torch)."""
    run_seed(seed, "program")


@pytest.mark.parametrize("seed", INTERPRETED_SEEDS)
def test_program_executor_with_bounds_checks(seed):
    """The Program executor's kernels with offset assertions (``Config.bounds_check``): every
    offset the runtime's addressing makes a kernel compute stays inside its tensor, for networks
    no test wrote by hand (a wrong address would otherwise read another tensor's memory)."""
    run_seed(seed, "program-bounds")


@pytest.mark.parametrize("executor", ["kernels", "program", "program-bounds"])
def test_generated_kernels_ran(executor):
    """Runs after the seeds above (file order): most networks launched generated kernels (a few
    are all library calls: a lone convolution or matmul)."""
    from tests.generated.check import KERNEL_LAUNCHES

    launches = KERNEL_LAUNCHES.get(executor, [])
    ran = [n for n in launches if n > 0]
    assert launches and len(ran) >= len(launches) // 2, launches
