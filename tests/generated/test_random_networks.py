"""Random networks (tests/generated/netgen.py) through Blade against eager PyTorch.

300 seeds through the reference executor (the CPU default), each compiled once at one shape and
checked at that shape and three others (batch 1 among them, odd sizes, sizes that are not
multiples of 8); subsets through the generated Triton kernels on Triton's CPU interpreter, by the
IR kernel executor and by the Program executor, in a subprocess started with ``TRITON_INTERPRET=1``
(tests/generated/interpreted_networks.py).

A failure prints a runnable reproduction and, for the first few failures of a run, the smallest
still-failing network the shrinker finds. Reproduce one seed with
``python -m tests.generated.check SEED [--executor kernels]``.

KNOWN_BUGS lists seeds that hit a bug already reported (named there) and not fixed on this
branch; they are skipped with the bug's name, and the entry goes when the fix lands.
"""

import os
import subprocess
import sys

import pytest

from tests.generated.check import check, report
from tests.generated.netgen import generate

CPU_SEEDS = range(300)
INTERPRETED_SEEDS = range(1000, 1040)
PROGRAM_SEEDS = range(1000, 1080)  # the Program executor (the CUDA default) on the interpreter

# Bugs found by this generator and not fixed yet, seed -> the bug's name and a minimal
# reproduction; a listed seed is skipped with that name. Empty: the relation and or-guard bugs the
# generator found (seeds 6, 12, 14, 79, 112, 138, 151, 184, 200, 244) are fixed.
KNOWN_BUGS: dict[int, str] = {}

_shrunk = {"count": 0}  # shrinking costs up to a minute: only the first failures of a run shrink


def run_seed(seed: int, executor: str) -> None:
    if seed in KNOWN_BUGS:
        pytest.skip(f"known bug: {KNOWN_BUGS[seed]}")
    net = generate(seed)
    failure = check(net, executor)
    if failure is not None:
        budget = 60.0 if _shrunk["count"] < 3 else 0.0
        _shrunk["count"] += 1
        pytest.fail(f"generator seed {seed}\n" + report(net, failure, executor, budget), pytrace=False)


@pytest.mark.parametrize("seed", CPU_SEEDS)
def test_reference_executor(seed):
    run_seed(seed, "reference")


def test_kernels_on_the_interpreter():
    here = os.path.dirname(__file__)
    root = os.path.dirname(os.path.dirname(here))
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           os.path.join(here, "interpreted_networks.py")],
                          capture_output=True, text=True, env=env, cwd=root)
    assert proc.returncode == 0, proc.stdout[-12000:] + proc.stderr[-3000:]


def test_generation_is_deterministic():
    for seed in (0, 7, 123):
        assert generate(seed).source() == generate(seed).source()
    assert generate(1).source() != generate(2).source()


def test_checker_catches_and_shrinks_a_wrong_answer(monkeypatch):
    """A planted bug (every float output off by 1e-2) is reported, reproduced and shrunk."""
    import blade
    import torch

    real = blade.optimize

    def off_by_a_bit(model, inputs, **kw):
        opt = real(model, inputs, **kw)

        def call(*args):
            return tuple(o + 1e-2 if o.is_floating_point() else o for o in opt(*args))
        return call

    monkeypatch.setattr(blade, "optimize", off_by_a_bit)
    net = next(n for n in map(generate, range(50))
               if len(n.steps) >= 3 and any(n.vals[o].is_float for o in n.outputs))
    failure = check(net)
    assert failure is not None and failure.kind == "mismatch", failure
    text = report(net, failure, "reference", shrink_budget_s=60)
    assert f"seed {net.seed}" in text and "class Net(torch.nn.Module)" in text
    small = text.split("smallest still-failing network")[1]
    assert small.count(" = ") < text.split("smallest still-failing network")[0].count(" = ")
    scope: dict = {}
    exec(small.split("\n", 1)[1].split("import blade")[0], scope)  # the printed network runs
    torch.manual_seed(0)
    assert isinstance(scope["Net"](), torch.nn.Module)
