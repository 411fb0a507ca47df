"""Shared pytest setup: the ``gpu`` marker skips without CUDA; model fixtures are built once."""

import os

import pytest
import torch

# Generated kernels run on the CPU only under Triton's interpreter, which must be switched on
# before triton is imported: tests/kernels runs in its own process (tests/test_kernels_interpreted.py).
collect_ignore = [] if os.environ.get("TRITON_INTERPRET") == "1" else ["kernels"]


def pytest_addoption(parser):
    parser.addoption("--bounds-check", action="store_true",
                     help="compile every generated kernel with Config(bounds_check=True) (device-side offset "
                          "assertions), whatever Config a test passes")


def pytest_configure(config):
    if config.getoption("--bounds-check", default=False):
        from blade.config import Config

        original = Config.__post_init__

        def checked(self):
            original(self)
            self.bounds_check = True

        Config.__post_init__ = checked


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
