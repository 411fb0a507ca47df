"""Runs tests/kernels (generated Triton kernels on Triton's CPU interpreter) in a subprocess
started with TRITON_INTERPRET=1."""

import os
import subprocess
import sys


def test_generated_kernels_under_the_interpreter():
    here = os.path.dirname(__file__)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(here, "kernels")],
                          capture_output=True, text=True, env=env, cwd=os.path.dirname(here))
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]
