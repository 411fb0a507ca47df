"""Float arguments taken as values on the Program executor (generated kernels on Triton's
interpreter: this folder runs with TRITON_INTERPRET=1), and in a saved and loaded module: the 0-dim
value inputs travel through the Program's inputs and the artifact's manifest."""

import tempfile

import pytest
import torch

import blade
from blade.runtime.program_errors import ProgramShapeError
from tests.unit.test_float_arguments import FORMS, NestedWithInt, TimestepLikeDiffusers, _assert_same, check_form


@pytest.mark.parametrize("form", [f for f, (_, _, _, as_values) in FORMS.items() if as_values])
def test_float_arguments_on_the_program_executor(form):
    check_form(form, "program")


def test_a_saved_module_with_float_arguments_as_values_loads_and_serves_every_value():
    torch.manual_seed(0)
    model = TimestepLikeDiffusers().eval()
    x = torch.randn(2, 8)
    opt = blade.optimize(model, (x, 981.0), config=blade.Config(executor="program"))
    opt(x, 961.5)  # the variant with the timestep as a value
    with tempfile.TemporaryDirectory() as d:
        blade.save(opt, d)
        loaded = blade.load(d, model)
        for t in (0.0, 3.25, 777.5, 981.0):
            xb = torch.randn(3, 8)
            with torch.no_grad():
                _assert_same(loaded(xb, t), model(xb, t), 1e-4)
        with pytest.raises(ProgramShapeError, match="differs from the saved"):
            loaded(x, 3)  # an int is not a float: no saved variant takes it


def test_a_saved_module_with_float_values_and_int_sizes():
    torch.manual_seed(0)
    model = NestedWithInt().eval()
    x = torch.randn(2, 8)
    opt = blade.optimize(model, (x, {"pad": 2, "scale": 0.5, "shift": 1.0}), config=blade.Config(executor="program"))
    opt(x, {"pad": 3, "scale": 0.25, "shift": -1.0})
    assert any(v.signature.valued and v.signature.sized for v in opt.variants)
    with tempfile.TemporaryDirectory() as d:
        blade.save(opt, d)
        loaded = blade.load(d, model)
        for opts in ({"pad": 0, "scale": 2.0, "shift": 0.5}, {"pad": 7, "scale": -1.5, "shift": 3.0}):
            xb = torch.randn(3, 8)
            with torch.no_grad():
                _assert_same(loaded(xb, opts), model(xb, opts), 1e-5)
