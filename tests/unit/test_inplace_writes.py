"""In-place writes into tensors a model made (``h[:, 0] = 0``, ``h[..., 1::2] = y``, ``h.fill_(v)``,
``h.copy_(y)``) compile: capture functionalises them into ``select_scatter``, ``slice_scatter``,
``fill`` and ``copy``, which ``frontend/aten_scatter.py`` turns into selects that fuse with the
ops around them. Each pattern: no eager fallback, eager's values at four sizes (batch 1, odd
sizes, a dim shorter than the written range). Random networks write too (``op_inplace_write`` in
``tests/generated/netops.py``)."""

import pytest
import torch

import blade

PATTERNS = {
    "select_first": lambda h, x: h.__setitem__((slice(None), 0), 0.0),
    "select_last_from_tensor": lambda h, x: h.__setitem__((Ellipsis, -1), x[..., 0] * 3),
    "slice_step": lambda h, x: h.__setitem__((Ellipsis, slice(1, None, 2)), x[..., 1::2] + 1),
    "slice_negative_start": lambda h, x: h.__setitem__((slice(None), slice(-2, None)), 7.0),
    "slice_middle_dim": lambda h, x: h.__setitem__((slice(None), slice(1, 3)), x[:, 1:3] * 0.5),
    "slice_past_the_end": lambda h, x: h.__setitem__((slice(None), slice(2, 100)), -1.0),
    "fill_scalar": lambda h, x: h.fill_(0.25),
    "fill_tensor": lambda h, x: h.fill_(x.amax()),
    "copy_broadcast_cast": lambda h, x: h.copy_((x[:, :1] > 0).to(torch.int64)),
}


class Writes(torch.nn.Module):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = pattern
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        h.mul_(2.0)
        PATTERNS[self.pattern](h, x)
        return torch.relu(h) + x


@pytest.mark.parametrize("pattern", PATTERNS)
def test_inplace_writes_compile_and_match_eager(pattern):
    torch.manual_seed(0)
    model = Writes(pattern).eval()
    opt = blade.optimize(model, (torch.randn(2, 5, 6),))
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported, unsupported
    for shape in [(2, 5, 6), (1, 3, 6), (3, 9, 6), (2, 1, 6)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), model(x), msg=lambda m: f"{pattern} at {shape}: {m}")
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported and opt.eager_calls == 0, unsupported
