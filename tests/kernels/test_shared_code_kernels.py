"""tests/unit/test_shared_code.py through the generated kernels (Triton's CPU interpreter): a
guard class with the same program launches the first variant's kernels."""

from tests.unit import test_shared_code as shared


def test_same_program_shares_kernels(capsys):
    shared.test_same_program_shares_code("kernels", capsys)
