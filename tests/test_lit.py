"""Runs the lit + filecheck golden IR tests (tests/lit) as part of pytest."""

import os
import subprocess
import sys


def test_lit_suite():
    here = os.path.join(os.path.dirname(__file__), "lit")
    lit = os.path.join(os.path.dirname(sys.executable), "lit")
    proc = subprocess.run([lit, "-v", here], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "Failed" not in proc.stdout
