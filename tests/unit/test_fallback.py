"""Unsupported ops never crash optimize: they run in eager PyTorch between compiled clusters and
are named in the report; strict mode raises naming the op, its shapes and why."""

import pytest
import torch

import blade
from blade.dialects.program import ClusterOp, TorchOp
from blade.frontend.fx_importer import UnsupportedOpError


class SpectralModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(9, 5)

    def forward(self, x):
        spec = torch.fft.rfft(x.relu(), dim=-1).abs()
        return self.proj(spec).sum(-1) + x.mean(-1)


def test_rfft_runs_in_eager_and_is_reported():
    model = SpectralModel().eval()
    opt = blade.optimize(model, (torch.randn(3, 16),), config=blade.Config(check_shapes=True))
    report = opt.report
    names = [u.target for u in report.unsupported]
    assert "aten._fft_r2c.default" in names
    text = report.format()
    assert "_fft_r2c" in text and "[s0, s1]" in text
    fn_ops = list(opt.report.module.ops)[-1].body.block.ops
    assert any(isinstance(op, TorchOp) for op in fn_ops)
    assert sum(isinstance(op, ClusterOp) for op in fn_ops) == 2
    for b in (3, 1, 5):
        x = torch.randn(b, 16)
        torch.testing.assert_close(opt(x), model(x))


def test_strict_mode_raises_with_op_and_shape():
    with pytest.raises(UnsupportedOpError, match=r"aten\._fft_r2c.*\[s0, s1\].*no Blade lowering"):
        blade.optimize(SpectralModel().eval(), (torch.randn(3, 16),), config=blade.Config(fallback="strict"))


class DataDependent(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.dropout(x, p=0.5, training=True) * 0 + x.logcumsumexp(-1)


def test_unlowered_uses_fall_back_with_reason():
    model = DataDependent().eval()
    opt = blade.optimize(model, (torch.randn(2, 6),))
    reasons = " ".join(u.reason for u in opt.report.unsupported)
    assert "logcumsumexp" in " ".join(u.target for u in opt.report.unsupported) or "logcumsumexp" in reasons
    x = torch.randn(4, 3)
    out = opt(x)
    torch.testing.assert_close(out, x.logcumsumexp(-1))
