"""Every lowered op family against eager PyTorch, at static, partially dynamic and fully dynamic
shapes (batch 1 and 3, odd sizes), through the reference executor with shape checking on."""

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade.dialects.program import TorchOp
from blade.ir import walk_ops
from tests.unit.op_matrix import CASES, SIZES


def _assert_close(out, ref):
    for o, r in zip(pytree.tree_leaves(out), pytree.tree_leaves(ref)):
        assert o.shape == r.shape and o.dtype == r.dtype
        torch.testing.assert_close(o, r, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fully_dynamic(name):
    factory, make = CASES[name]
    model = factory().eval()
    opt = blade.optimize(model, make(*SIZES[0]), config=blade.Config(check_shapes=True, fallback="strict"))
    assert not any(isinstance(op, TorchOp) for op in walk_ops(opt.report.module))
    for b, n in SIZES:
        inputs = make(b, n)
        with torch.no_grad():
            _assert_close(opt(*inputs), model(*inputs))


@pytest.mark.parametrize("name", ["conv_block", "attention", "shapes"])
def test_partially_dynamic_batch_pinned(name):
    factory, make = CASES[name]
    model = factory().eval()
    cfg = blade.Config(check_shapes=True, static_dims={"x": [0]})
    opt = blade.optimize(model, make(2, 12), config=cfg)
    assert opt.report.module is not None
    for n in (12, 9):
        inputs = make(2, n)
        _assert_close(opt(*inputs), model(*inputs))
    assert len(opt.variants) == 1


@pytest.mark.parametrize("name", ["conv_block", "geglu", "reductions"])
def test_static(name):
    factory, make = CASES[name]
    model = factory().eval()
    opt = blade.optimize(model, make(2, 12), config=blade.Config(dynamic="none", check_shapes=True))
    inputs = make(2, 12)
    _assert_close(opt(*inputs), model(*inputs))
    from blade.ir import read_symbol_table
    assert read_symbol_table(opt.report.module).symbols == {}
