"""Python-level nodes of exported graphs (issue 8, item 5): logical operators on SymBools are
size arithmetic (a use as data is an exact 0/1 value), the eager fallback calls any callable of
the graph (Python operators, higher-order ops such as ``torch.cond`` with their subgraphs), and
``torch.cond`` (the advice for data-dependent branches) gives right answers both ways."""

import operator
import random

import pytest
import sympy
import torch

import blade
from blade.dialects.program import bool_as_dim, callable_ref, resolve_callable
from blade.symbolic import evaluate, make_symbol


class SymLogic(torch.nn.Module):
    def forward(self, x, y):
        s0, s1 = x.shape
        either = (s0 > 1) | (s1 == y.shape[0])
        both = (s0 < 4) & torch.sym_not(s1 > 7)
        return x * either + both


@pytest.mark.parametrize("b,n,m", [(2, 5, 5), (1, 9, 9), (1, 5, 3), (5, 3, 4), (3, 8, 1)])
def test_symbool_logic_is_size_arithmetic(b, n, m):
    model = SymLogic().eval()
    if not hasattr(SymLogic, "_opt"):
        SymLogic._opt = blade.optimize(model, (torch.randn(2, 5), torch.randn(5)),
                                       config=blade.Config(check_shapes=True, fallback="strict"))
    opt = SymLogic._opt
    x, y = torch.randn(b, n), torch.randn(m)
    torch.testing.assert_close(opt(x, y), model(x, y))
    assert len(opt.variants) == 1 and not opt.report.unsupported


@pytest.mark.parametrize("cond", ["a > b", "a >= b", "a < b", "a <= b", "Eq(a, b)", "Ne(a, b)",
                                  "(a > 2) | Eq(b, 3)", "(a <= b) & ~(b > 5)", "2*a - 3*b/2 > 1"])
def test_bool_as_dim_is_exact(cond):
    a, b = make_symbol("a"), make_symbol("b")
    expr = sympy.sympify(cond, locals={"a": a, "b": b})
    as_dim = bool_as_dim(expr)
    rng = random.Random(cond)
    for _ in range(200):
        va, vb = rng.randint(1, 12), rng.randint(1, 12)
        assert evaluate(as_dim, {"a": va, "b": vb}) == int(bool(expr.subs({a: va, b: vb}))), (va, vb)


def test_callables_round_trip_by_stable_name():
    local = lambda t: t + 1  # noqa: E731 - not importable: held by the registry
    for fn, name in [(operator.or_, "py:operator.or_"), (torch.sym_not, "py:torch.sym_not"),
                     (torch.ops.aten.add.Tensor, "aten.add.Tensor"),
                     (torch.ops.higher_order.cond, "higher_order.cond")]:
        assert callable_ref(fn) == name
        assert resolve_callable(name) is fn
    ref = callable_ref(local)
    assert ref.startswith("registry:") and resolve_callable(ref) is local
    with pytest.raises(RuntimeError, match="not registered in this process"):
        resolve_callable("registry:gone#999999")


class DataBranch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda x: self.lin(x).relu(), lambda x: x - 1.0, (x,)) * 2


class ShapeBranch(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.shape[0] > 2, lambda x: x.cos(), lambda x: x.sin(), (x,)) + 1


@pytest.mark.parametrize("model_cls", [DataBranch, ShapeBranch])
def test_torch_cond_runs_in_the_fallback_with_both_branches(model_cls):
    model = model_cls().eval()
    opt = blade.optimize(model, (torch.randn(3, 4),), config=blade.Config(check_shapes=True))
    assert [u.target for u in opt.report.unsupported] == ["higher_order.cond"]
    for x in [torch.rand(3, 4), -torch.rand(5, 4), torch.rand(1, 4), -torch.rand(2, 4)]:
        torch.testing.assert_close(opt(x), model(x))
    assert len(opt.variants) == 1


class SizeAsData(torch.nn.Module):
    def forward(self, x):
        return x * x.shape[0] + (x.shape[1] > 3)


def test_a_size_used_as_data_keeps_its_value():
    model = SizeAsData().eval()
    opt = blade.optimize(model, (torch.randn(2, 5),), config=blade.Config(check_shapes=True))
    for b, n in [(3, 5), (1, 2), (4, 4)]:
        x = torch.randn(b, n)
        torch.testing.assert_close(opt(x), model(x))


class TopHalf(torch.nn.Module):
    def forward(self, x):
        return torch.topk(x, x.shape[1], dim=1).values * 2  # k is a bare symbol


def test_fallback_with_a_symbolic_size_argument():
    model = TopHalf().eval()
    opt = blade.optimize(model, (torch.randn(2, 6),), config=blade.Config(check_shapes=True))
    assert [u.target for u in opt.report.unsupported] == ["aten.topk.default"]
    for b, n in [(3, 7), (1, 2), (2, 6)]:
        x = torch.randn(b, n)
        torch.testing.assert_close(opt(x), model(x))
