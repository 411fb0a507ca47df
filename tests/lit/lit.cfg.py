"""lit configuration: golden IR tests, one file per pass (``<pass-name>.mlir``)."""

import os
import sys

import lit.formats

config.name = "blade"  # noqa: F821 - `config` is provided by lit
config.test_format = lit.formats.ShTest(execute_external=False)  # noqa: F821
config.suffixes = [".mlir"]  # noqa: F821
config.test_source_root = os.path.dirname(__file__)  # noqa: F821
config.excludes = ["lit.cfg.py", "Inputs"]  # noqa: F821
# blade-opt, blade and filecheck come from the environment Python runs in
config.environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")  # noqa: F821
