"""Ops whose results eager PyTorch alone can size or order run in the eager fallback and the rest of
the program still compiles around them: data-dependent result sizes (nonzero, masked_select),
item(), ops with effect tokens (linalg.inv), floats computed from sizes; internal errors surface
as a Blade error naming the stage and the shapes."""

import pytest
import torch

import blade
from blade.dialects.program import TorchOp
from blade.ir import walk_ops


def _check(model, example, calls):
    opt = blade.optimize(model.eval(), example, config=blade.Config(check_shapes=True))
    for args in calls:
        got, want = opt(*args), model(*args)
        if isinstance(want, torch.Tensor):
            torch.testing.assert_close(got, want)
        else:
            assert got == pytest.approx(want)
    return opt


class NonzeroThenCompute(torch.nn.Module):
    def forward(self, x):
        idx = torch.nonzero(x > 0)  # (u0, 2): size known only after the op ran
        return (idx * 2 + 1).sum(1).float() * x.shape[1]


def test_data_dependent_size_binds_at_run_time():
    x = torch.randn(4, 5)
    opt = _check(NonzeroThenCompute(), (x,), [(x,), (torch.randn(3, 7),), (-torch.ones(2, 2),)])
    assert [u.target for u in opt.report.unsupported] == ["aten.nonzero.default"]
    # the ops after nonzero are compiled, over a symbol bound from nonzero's result
    text = str(opt.report.module)
    assert "data-dependent: aten.nonzero.default result 0 dim 0" in text


class MaskedSelectMean(torch.nn.Module):
    def forward(self, x):
        return torch.masked_select(x, x > 0).exp().sum() + torch.unique(x).numel()


def test_masked_select_and_unique():
    _check(MaskedSelectMean(), (torch.randn(4, 3),), [(torch.randn(4, 3),), (torch.randn(2, 9),)])


class Item(torch.nn.Module):
    def forward(self, x):
        return (x * 2).sum().item()


def test_item_returns_a_python_number():
    opt = _check(Item(), (torch.randn(3),), [(torch.randn(3),), (torch.randn(8),)])
    assert isinstance(opt(torch.randn(4)), float)


class Inverse(torch.nn.Module):
    def forward(self, x):
        return torch.linalg.inv(x) * 2 + 1


def test_effect_token_op_runs_eagerly():
    x = torch.randn(3, 3) + 3 * torch.eye(3)
    opt = _check(Inverse(), (x,), [(x,), (torch.randn(5, 5) + 5 * torch.eye(5),)])
    ops = [op for op in walk_ops(opt.report.module) if isinstance(op, TorchOp)]
    assert any("_linalg_check_errors" in op.p("target") for op in ops)  # the check is kept
    with pytest.raises(Exception, match="singular|not invertible"):
        opt(torch.zeros(2, 2))


class NearestExact(torch.nn.Module):
    def forward(self, x):
        return torch.nn.functional.interpolate(x, size=3, mode="nearest-exact")


def test_float_computed_from_sizes_is_exact():
    """size / 3 is a float (SymFloat): never rounded to an integer dim value."""
    _check(NearestExact(), (torch.randn(2, 3, 4),), [(torch.randn(2, 3, 4),), (torch.randn(1, 2, 6),)])


class Double(torch.nn.Module):
    def forward(self, x):
        return x * 2


def test_internal_error_names_stage_and_shapes(monkeypatch):
    from blade.pipeline import CompileError
    from blade.passes.canonicalize import Canonicalize

    def broken(self, ctx, module):
        raise ZeroDivisionError("integer modulo by zero")

    monkeypatch.setattr(Canonicalize, "apply", broken)
    # (without strict mode the module answers eagerly, printing the same message)
    with pytest.raises(CompileError, match=r"Double.*ZeroDivisionError.*canonicalize.*\(2, 3\):float32"):
        blade.optimize(Double().eval(), (torch.randn(2, 3),), config=blade.Config(fallback="strict"))


class SliceByValue(torch.nn.Module):
    def forward(self, x, n):
        return x.exp()[: n.sum().item()] * 2


def test_item_used_as_a_size_binds_a_symbol():
    from blade.ir import parse_module, print_module

    x, n = torch.randn(6, 3), torch.tensor([1, 2])
    opt = _check(SliceByValue(), (x, n), [(x, torch.tensor([2, 2])), (x, torch.tensor([0, 1])),
                                          (torch.randn(9, 2), torch.tensor([4, 4]))])
    text = print_module(opt.report.module)
    assert 'binds = "' in text and "data-dependent: value of" in text
    assert print_module(parse_module(text)) == text
