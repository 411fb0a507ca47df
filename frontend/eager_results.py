"""What the eager fallback needs beyond "call the op": results whose sizes depend on tensor
values, results that are Python scalars, and ops that torch.export threads an effect token through.

Blade's types are symbolic over input dims, and an op like ``nonzero``, ``unique`` or
``masked_select`` has a result size no input dim determines. Such an op still runs in eager
PyTorch (a ``blade.torch_op``); each data-dependent size gets a Blade symbol of its own, whose
origin starts with ``DATA_DEPENDENT`` and whose value the executor reads from the op's actual
result at run time (``bind_data_dependent``), so the ops after it compile over that symbol like
over any input dim. Before that op has run the symbol has no value; guards never mention it
(checks on it are left to the eager op, which raises itself).

``item()`` / ``_local_scalar_dense`` returns a Python number computed from tensor data: it runs in
eager too, its value carried as a rank-0 tensor (and returned as a Python number when it is a
program output).

Ops with effects (``_linalg_check_errors``, which ``linalg.inv`` / ``linalg.solve`` / ``cholesky``
decompose into) reach the importer wrapped in ``with_effects(token, op, *args)``; the token only
orders effects, and the importer's program runs ops in graph order anyway, so the op runs as an
ordinary fallback and the token is dropped.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import sympy
import torch

from blade.dialects.types import TensorType, tensor_type
from blade.symbolic import ShapeError

#: SymbolInfo.origin prefix of symbols bound from an eager op's result at run time
DATA_DEPENDENT = "data-dependent"


def _unbacked(expr) -> set:
    from torch.fx.experimental.symbolic_shapes import free_unbacked_symbols

    return set(free_unbacked_symbols(expr))


def result_type(ctx, val: Any, target: str, index: int) -> TensorType:
    """The Blade type of one eager result: data-dependent dims get fresh run-time-bound symbols."""
    if not isinstance(val, torch.Tensor):
        return tensor_type([], scalar_dtype(val))
    dims = []
    for j, d in enumerate(val.shape):
        try:
            dims.append(ctx.mapping.convert(d))
            continue
        except ShapeError:
            if not isinstance(d, torch.SymInt):
                raise
        expr = d.node.expr
        if ctx.mapping.shape_env is not None:
            expr = ctx.mapping.shape_env.replace(expr)
        if not expr.is_Symbol or expr not in _unbacked(expr):
            raise ShapeError(f"{target} result {index} has size {expr} in dim {j}, which depends on tensor "
                             "values through an expression Blade cannot bind from the result")
        sym = ctx.mapping.table.fresh(f"{DATA_DEPENDENT}: {target} result {index} dim {j}", lo=0)
        ctx.mapping.unbacked[expr] = sym
        dims.append(sym)
    return tensor_type(dims, val.dtype)


def scalar_dtype(val: Any) -> torch.dtype:
    """The rank-0 tensor dtype that carries an eager op's Python-scalar result."""
    if isinstance(val, (bool, torch.SymBool)):
        return torch.bool
    if isinstance(val, (int, torch.SymInt)):
        return torch.int64
    if isinstance(val, (float, torch.SymFloat)):
        return torch.float64
    raise ShapeError(f"an eager op returns a {type(val).__name__}; Blade carries tensors and Python numbers only")


def is_scalar_result(val: Any) -> bool:
    return isinstance(val, (bool, int, float, torch.SymBool, torch.SymInt, torch.SymFloat))


def data_dependent_names(table) -> set[str]:
    return {name for name, info in table.symbols.items() if info.origin.startswith(DATA_DEPENDENT)}


def mentions_data_dependent(table, expr) -> bool:
    names = data_dependent_names(table)
    return any(str(s) in names for s in getattr(expr, "free_symbols", ()))


def bind_data_dependent(types: list, outs: list, symbols: dict[str, int], names: set[str]) -> None:
    """Read the values of data-dependent symbols from an eager op's actual results."""
    for ty, t in zip(types, outs):
        if not isinstance(t, torch.Tensor) or not isinstance(ty, TensorType):
            continue
        for d, n in zip(ty.shape, t.shape):
            if isinstance(d, sympy.Symbol) and d.name in names:
                symbols[d.name] = int(n)


def effect_call(node):
    """``with_effects(token, op, *args)`` as a node-like view of ``op(*args)`` without the token."""
    val = node.meta.get("val")
    vals = list(val[1:]) if isinstance(val, (tuple, list)) else []
    vals = [v for v in vals if v is not None]
    view = SimpleNamespace(target=node.args[1], args=tuple(node.args[2:]), kwargs=dict(node.kwargs),
                           name=node.name, meta={**node.meta, "val": tuple(vals)})
    return view


def is_with_effects(target) -> bool:
    return target is getattr(torch.ops.higher_order, "with_effects", None)


def scalar_as_symbol(ctx, node) -> sympy.Symbol | None:
    """``item()`` of an integer tensor whose value is used as a size (``tensor_split`` by tensor
    indices): the item runs eagerly and its value becomes a data-dependent symbol, bound when that
    op has run, so the sizes computed from it compile like any other. None when the result is not
    a plain unbacked SymInt."""
    from xdsl.dialects.builtin import StringAttr

    val = node.meta.get("val")
    if not isinstance(val, torch.SymInt):
        return None
    expr = val.node.expr
    if ctx.mapping.shape_env is not None:
        expr = ctx.mapping.shape_env.replace(expr)
    if not expr.is_Symbol or expr not in _unbacked(expr) or expr in ctx.mapping.unbacked:
        return None
    value = ctx.fallback(node, "a value read from tensor data (item()) runs in eager PyTorch")
    sym = ctx.mapping.table.fresh(f"{DATA_DEPENDENT}: value of {node.name}", lo=0)
    value.owner.properties["binds"] = StringAttr(sym.name)
    ctx.mapping.unbacked[expr] = sym
    return sym
