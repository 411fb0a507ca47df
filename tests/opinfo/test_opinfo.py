"""PyTorch's OpInfo database (``op_db``) as Blade's conformance suite: one test per op.

Each op's first float32 sample becomes a one-op module compiled once by ``blade.optimize`` with
every dim dynamic; the op's other samples with the same argument structure, and the base sample
with a dim narrowed to size 1, must match eager (random ops: shape, dtype, mean). See
``harness.py`` for the rules and ``expected_failures.py`` for the ops that may fail, each with its
reason. An op on that list that passes fails the test, so the list only shrinks.

CI budget: the whole walk, every sample, takes about 5.5 minutes of one CPU core (measured: 677 ops,
325 s user + 8 s system time; 11 min wall on a 2-core machine shared with other jobs), so by
default every op runs every sample on every CI run.
``BLADE_OPINFO_SAMPLES=3`` checks only the first 3 samples of the base structure (plus the size-1
variant) when time is short; ``BLADE_OPINFO_SHARD=i/n`` runs the i-th of n interleaved shards (for
parallel jobs; together the shards still run every op).
"""

from __future__ import annotations

import os

import pytest
import torch

pytest.importorskip("expecttest")  # torch.testing._internal imports it

from tests.opinfo.expected_failures import EXPECTED, EXPECTED_GPU  # noqa: E402
from tests.opinfo.harness import float32_ops, op_id, run_op  # noqa: E402

_samples = os.environ.get("BLADE_OPINFO_SAMPLES", "all")
MAX_SAMPLES = None if _samples == "all" else int(_samples)


def _shard(ops: list) -> list:
    spec = os.environ.get("BLADE_OPINFO_SHARD")
    if not spec:
        return ops
    i, n = (int(x) for x in spec.split("/"))
    return ops[i::n]


OPS = _shard(float32_ops())


def _judge(outcome, expected: str | None) -> None:
    if expected is not None:
        if outcome.status == "pass":
            pytest.fail(f"unexpected pass: remove {outcome.op!r} from tests/opinfo/expected_failures.py "
                        f"(listed as: {expected})")
        pytest.xfail(f"{expected} [{outcome.status}: {outcome.message[:200]}]")
    if outcome.status == "skip":
        pytest.skip(outcome.message)
    assert outcome.status == "pass", outcome.line()


@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_op_cpu_float32(op):
    outcome = run_op(op, max_samples=MAX_SAMPLES)
    _judge(outcome, EXPECTED.get(outcome.op))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("op", OPS, ids=op_id)
def test_op_gpu_kernels(op, dtype):
    """The same walk on CUDA through generated Triton kernels (``executor="kernels"``)."""
    if dtype not in op.supported_dtypes("cuda"):
        pytest.skip(f"{op_id(op)} has no {dtype} CUDA samples")
    outcome = run_op(op, {"executor": "kernels"}, dtype=dtype, device="cuda", max_samples=MAX_SAMPLES)
    key = op_id(op)
    expected = EXPECTED_GPU.get((key, str(dtype).removeprefix("torch."))) or EXPECTED_GPU.get(key) or EXPECTED.get(key)
    _judge(outcome, expected)


def test_expected_failures_name_real_ops():
    """A misspelt or removed op on the list would never be checked, so it could never shrink."""
    ids = {op_id(op) for op in float32_ops()}
    assert not sorted(set(EXPECTED) - ids)
    assert all(reason.strip() for reason in EXPECTED.values())
