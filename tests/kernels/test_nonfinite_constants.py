"""Non-finite constants inside generated kernels: ``masked_fill(mask, float("-inf"))`` before a
softmax, ``where(x > 0, x, inf)``, ``clamp`` against an infinite bound, a NaN fill. A constant's
Triton literal was Python's ``repr`` (``-inf``, ``nan``), which is no name in a kernel: every
kernel holding one failed and its calls were answered eagerly as internal errors. Generated over
the forms below and the values ``inf``, ``-inf``, ``nan`` and large finite ones, through the IR
kernel executor and the Program executor, against eager at three sizes."""

import itertools
import math

import pytest
import torch

import blade

VALUES = [float("inf"), float("-inf"), float("nan"), 3.0e38, -0.0]

FORMS = {
    "where": lambda x, c: torch.where(x > 0, x * 2, torch.full_like(x, c)),
    "masked_fill_softmax": lambda x, c: torch.softmax(x.masked_fill(x < -0.5, c), dim=-1),
    "clamp_max": lambda x, c: torch.clamp(x * 3, max=c) + 1,
    "maximum": lambda x, c: torch.maximum(x, torch.tensor(c)) - x,
    "add_then_isfinite": lambda x, c: torch.where(torch.isfinite(x + c), x, 0.0),
}


class Form(torch.nn.Module):
    def __init__(self, form: str, value: float):
        super().__init__()
        self.form, self.value = form, value

    def forward(self, x):
        return FORMS[self.form](torch.tanh(x), self.value)


@pytest.mark.parametrize("executor", ["kernels", "program"])
@pytest.mark.parametrize("form,value", list(itertools.product(FORMS, VALUES)),
                         ids=lambda v: str(v) if not isinstance(v, float) else repr(v))
def test_nonfinite_constants_compile_into_kernels(form, value, executor):
    if form == "masked_fill_softmax" and math.isnan(value):
        pytest.skip("a NaN-filled row is NaN in every path; covered by the other forms")
    model = Form(form, value).eval()
    opt = blade.optimize(model, (torch.randn(2, 5, 16),),
                         config=blade.Config(executor=executor, check_shapes=True, kernel_cache_dir=None))
    for shape in [(2, 5, 16), (1, 3, 7), (3, 9, 33)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            got, want = opt(x), model(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert opt.eager_calls == 0
