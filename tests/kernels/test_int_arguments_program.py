"""Int arguments taken as sizes on the Program executor (generated kernels on Triton's
interpreter: this folder runs with TRITON_INTERPRET=1), and in a saved and loaded module: the
size carriers travel through the Program's inputs and the artifact's manifest."""

import tempfile

import pytest
import torch

import blade
from blade.runtime.program_errors import ProgramShapeError
from tests.unit.test_int_arguments import FORMS, AsTensorLikeDiffusers, _assert_same, check_form


@pytest.mark.parametrize("form", list(FORMS))
def test_int_arguments_on_the_program_executor(form):
    check_form(form, "program")


def test_a_saved_module_with_int_arguments_as_sizes_loads_and_serves_every_value():
    torch.manual_seed(0)
    model = AsTensorLikeDiffusers().eval()
    x = torch.randn(2, 8)
    opt = blade.optimize(model, (x, 981), config=blade.Config(executor="program"))
    opt(x, 961)  # the variant with the timestep as a symbol
    with tempfile.TemporaryDirectory() as d:
        blade.save(opt, d)
        loaded = blade.load(d, model)
        for t in (0, 3, 777, 981):
            xb = torch.randn(3, 8)
            with torch.no_grad():
                _assert_same(loaded(xb, t), model(xb, t))
        with pytest.raises(ProgramShapeError, match="not ints in"):
            loaded(x, -1)
