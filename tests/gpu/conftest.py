"""GPU test options. ``pytest tests/gpu --blade-bounds-check`` runs every GPU test with
``Config.bounds_check`` on: every generated kernel asserts that each address it computes lies
inside the tensor it reads or writes (the correctness issue asks for one such run of the GPU
tests; the default run measures the kernels as shipped)."""

import pytest

import blade


def pytest_addoption(parser):
    parser.addoption("--blade-bounds-check", action="store_true",
                     help="compile bounds checks into every generated kernel (Config.bounds_check)")


@pytest.fixture(autouse=True)
def _bounds_check(request, monkeypatch):
    if not request.config.getoption("--blade-bounds-check"):
        return
    post_init = blade.Config.__post_init__

    def checked(self):
        post_init(self)
        self.bounds_check = True

    monkeypatch.setattr(blade.Config, "__post_init__", checked)
