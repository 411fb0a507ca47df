"""Program-structure ops of the ``blade`` dialect: the module's symbol table and guards, eager
fallback calls, and clusters of supported ops.

A module reads top to bottom: symbols (with ranges and where their value comes from), guards
(assumptions on input sizes checked at call time), then the ``func.func``:

    blade.symbol {sym_name = "s0", lo = 1 : i64, hi = 63 : i64, origin = "sample.size(0)"} : () -> ()
    blade.guard {cond = "s0 <= 63", reason = "torch.export: s53 < 64"} : () -> ()
    func.func @forward(%arg0 : !blade.tensor<[s0, 4, 8*s1, 8*s2], f32>) -> ... { ... }
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import weakref
from dataclasses import dataclass
from typing import Any, ClassVar

import sympy
from xdsl.dialects.builtin import IntegerAttr, StringAttr
from xdsl.irdl import (
    irdl_op_definition,
    opt_prop_def,
    prop_def,
    region_def,
    traits_def,
    var_operand_def,
    var_result_def,
)
from xdsl.traits import IsTerminator
from xdsl.utils.exceptions import VerifyException

from blade.dialects.base import ExecEnv, TensorOp
from blade.dialects.types import TensorType
from blade.shape_syntax import format_dim, parse_dim_text
from blade.symbolic import is_integer_valued
from blade.lazy import LazyModule
from blade.runtime.call_args import decode_args

torch = LazyModule("torch")  # imported on first use (see blade.lazy)


@irdl_op_definition
class SymbolOp(TensorOp):
    """Declares a dimension symbol with its range and origin (``hi`` absent: unbounded).

    blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "sample.size(2) / 8"} : () -> ()
    """

    name = "blade.symbol"
    sym_name = prop_def(StringAttr)
    lo = prop_def(IntegerAttr)
    hi = opt_prop_def(IntegerAttr)
    origin = opt_prop_def(StringAttr)


@irdl_op_definition
class GuardOp(TensorOp):
    """An assumption on the input sizes, checked before every call (``cond`` in dim syntax).

    blade.guard {cond = "s0 <= 63", reason = "diffusers: batch < 64 takes another branch"} : () -> ()
    """

    name = "blade.guard"
    cond = prop_def(StringAttr)
    reason = opt_prop_def(StringAttr)


@irdl_op_definition
class YieldOp(TensorOp):
    """Terminates a ``blade.cluster`` body, naming the values the cluster returns.

    blade.yield %3 : (!blade.tensor<[s0], f32>) -> ()
    """

    name = "blade.yield"
    values = var_operand_def(TensorType)
    traits = traits_def(IsTerminator())


@irdl_op_definition
class ClusterOp(TensorOp):
    """A group of supported ops compiled as one unit; captures its inputs as block arguments.

    %r = blade.cluster %x ({
    ^bb0(%a : !blade.tensor<[s0], f32>):
      %e = blade.exp %a : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>
      blade.yield %e : (!blade.tensor<[s0], f32>) -> ()
    }) {id = 0 : i64} : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>
    """

    name = "blade.cluster"
    CATEGORY: ClassVar[str] = "cluster"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    body = region_def("single_block")
    cluster_id = prop_def(IntegerAttr, prop_name="id")

    def verify_(self):
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException("blade.cluster: one block argument per input")
        term = block.last_op
        if not isinstance(term, YieldOp) or len(term.values) != len(self.outputs):
            raise VerifyException("blade.cluster: body must end in blade.yield of every output")


# --------------------------------------------------------------------------------------------
# eager fallback
# --------------------------------------------------------------------------------------------
#
# A fallback names its callable by a stable string, so the op prints, parses and runs:
#
#   aten.add.Tensor, quantized.linear.default   an operator overload, through torch.ops
#   higher_order.cond                           a higher-order operator (torch.ops.higher_order)
#   py:operator.or_, py:torch.sym_not           a Python callable, by import path
#   registry:true_graph_0#3                     anything else (a higher-order op's subgraph, a
#                                               local function): held by this process's registry,
#                                               so such an op only runs in the process that
#                                               imported it


@dataclass(frozen=True)
class CallableRef:
    """A callable argument of a fallback call (e.g. the branches of ``cond``), by stable name."""

    name: str


_REGISTRY: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_STRONG: dict[str, Any] = {}  # callables that cannot be weakly referenced (builtins, partials)
_COUNTER = itertools.count()


def callable_ref(obj: Any, label: str | None = None) -> str:
    """The stable name of ``obj`` (see the table above); registers it (named after ``label``) when
    nothing else works."""
    if isinstance(obj, torch._ops.OpOverload):
        return f"{obj.namespace}.{obj._opname}.{obj._overloadname}"
    if isinstance(obj, torch._ops.HigherOrderOperator):
        name = f"higher_order.{obj.name()}"
        if _resolve_path(torch.ops, name) is obj:
            return name
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and "<" not in qualname:
        path = f"{module.replace('_operator', 'operator')}.{qualname}"
        try:
            if _import_path(path) is obj:
                return "py:" + path
        except (ImportError, AttributeError):
            pass
    label = label or qualname or getattr(obj, "__name__", None) or type(obj).__name__
    name = f"registry:{label.replace('<', '').replace('>', '')}#{next(_COUNTER)}"
    try:
        _REGISTRY[name] = obj
    except TypeError:
        _STRONG[name] = obj
    return name


def resolve_callable(name: str) -> Any:
    """The callable ``name`` stands for (the inverse of ``callable_ref``)."""
    if name.startswith("py:"):
        return _import_path(name[3:])
    if name.startswith("registry:"):
        obj = _REGISTRY.get(name, _STRONG.get(name))
        if obj is None:
            raise RuntimeError(f"eager fallback callable {name} is not registered in this process: "
                               "programs calling Python objects (higher-order op subgraphs, local "
                               "functions) only run in the process that imported them")
        return obj
    return _resolve_path(torch.ops, name)


resolve_torch_op = resolve_callable  # the name earlier versions used


def _resolve_path(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _import_path(path: str) -> Any:
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # longest importable module prefix, then attributes
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        return _resolve_path(module, ".".join(parts[cut:]))
    return importlib.import_module(path)


def is_condition(a: Any) -> bool:
    """A symbolic truth value (``s0 > 1``, ``And``, ``true``), not a dim (sympy symbols are
    ``Boolean`` too, hence the ``Expr`` test)."""
    return isinstance(a, sympy.logic.boolalg.Boolean) and not isinstance(a, sympy.Expr)


def bool_as_dim(cond: sympy.Basic) -> sympy.Expr:
    """An integer expression equal to 1 where ``cond`` holds and 0 elsewhere, exact for integer
    symbols and written with max/min only (so it prints in dim syntax): ``a > b`` is
    ``min(max(a - b, 0), 1)``, ``or`` is ``max``, ``and`` is ``min``, ``not p`` is ``1 - p``."""
    if cond is sympy.true or cond is True:
        return sympy.Integer(1)
    if cond is sympy.false or cond is False:
        return sympy.Integer(0)
    if isinstance(cond, sympy.And):
        return sympy.Min(*[bool_as_dim(a) for a in cond.args])
    if isinstance(cond, sympy.Or):
        return sympy.Max(*[bool_as_dim(a) for a in cond.args])
    if isinstance(cond, sympy.Not):
        return 1 - bool_as_dim(cond.args[0])
    if isinstance(cond, sympy.Rel):
        d = sympy.expand(cond.lhs - cond.rhs)
        dens = [t.as_coeff_Mul()[0].q for t in sympy.Add.make_args(d) if t.as_coeff_Mul()[0].is_Rational]
        d = sympy.expand(d * math.lcm(*dens)) if dens else d  # a positive scale keeps the sign
        if any(not t.as_coeff_Mul()[0].is_Integer for t in sympy.Add.make_args(d)):
            raise TypeError(f"condition {cond} is not a comparison of integers")
        one, zero = sympy.Integer(1), sympy.Integer(0)
        clamp = lambda e: sympy.Min(sympy.Max(e, zero), one)  # noqa: E731
        if isinstance(cond, sympy.Gt):
            return clamp(d)
        if isinstance(cond, sympy.Ge):
            return clamp(d + 1)
        if isinstance(cond, sympy.Lt):
            return clamp(-d)
        if isinstance(cond, sympy.Le):
            return clamp(1 - d)
        ne = sympy.Min(sympy.Max(d, -d), one)
        return ne if isinstance(cond, sympy.Ne) else 1 - ne
    raise TypeError(f"cannot encode the condition {cond} ({type(cond).__name__}) as a value")


def encode_call(args: Any, tensor_index: dict[int, int]) -> str:
    """JSON template of a call's arguments; tensors become ``{"t": i}`` (operand i), symbolic
    ints ``{"d": "<dim>"}``, symbolic bools ``{"b": "<0/1 dim>"}``, callables ``{"fn": name}``,
    dtypes ``{"dtype": "float32"}``. ``tensor_index`` maps ``id()`` of a placeholder object to its
    operand number."""

    def enc(a):
        if id(a) in tensor_index:
            return {"t": tensor_index[id(a)]}
        if a is None or isinstance(a, (bool, int, float, str)):
            return a
        if isinstance(a, CallableRef):
            return {"fn": a.name}
        if is_condition(a):
            return {"b": format_dim(bool_as_dim(a))}
        if isinstance(a, sympy.Expr):
            if a.is_Integer:
                return int(a)
            # a float computed from sizes (SymFloat): s / 3, eps * max(m, n). Sympy cannot tell that
            # every integer expression is one (Swin's window pad ``(-s) mod min(a, b)``: is_integer
            # None), and such a pad amount passed as a float made aten.pad refuse its arguments
            if a.is_integer is not True and not is_integer_valued(a):
                return {"f": sympy.srepr(a)}
            return {"d": format_dim(a)}
        if isinstance(a, torch.dtype):
            return {"dtype": str(a).removeprefix("torch.")}
        if isinstance(a, torch.device):
            return {"device": True}
        if isinstance(a, torch.memory_format):
            return {"memory_format": str(a).removeprefix("torch.")}
        if isinstance(a, torch.layout):
            return {"layout": str(a).removeprefix("torch.")}
        if isinstance(a, (list, tuple)):
            return [enc(x) for x in a]
        if isinstance(a, dict):
            return {"kw": {k: enc(v) for k, v in a.items()}}
        raise TypeError(f"cannot encode argument {a!r} ({type(a).__name__}) of an eager fallback call")

    return json.dumps(enc(args))


def decode_call(template: str, operands: list[torch.Tensor], env: ExecEnv) -> Any:
    def real(text: str) -> float:
        e = sympy.sympify(text)
        return float(e.subs({s: env.symbols[s.name] for s in e.free_symbols}))

    return decode_args(json.loads(template), {
        "t": lambda i: operands[i],
        "d": lambda text: env.eval_dim(parse_dim_text(text)),
        "b": lambda text: bool(env.eval_dim(parse_dim_text(text))),
        "fn": resolve_callable,
        "f": real,
        "device": lambda _: env.device,
    })


@irdl_op_definition
class TorchOp(TensorOp):
    """A call Blade does not compile, run in eager PyTorch (``reason`` says why).

    %y = blade.torch_op %x {target = "aten._fft_r2c.default", call = "[[{\\"t\\": 0}, [1], 0, true], {\\"kw\\": {}}]", reason = "no Blade lowering for aten._fft_r2c"} : (!blade.tensor<[s0, 16], f32>) -> !blade.tensor<[s0, 9], f32>
    """

    name = "blade.torch_op"
    CATEGORY: ClassVar[str] = "fallback"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    target = prop_def(StringAttr)
    call = prop_def(StringAttr)
    reason = opt_prop_def(StringAttr)
    #: a data-dependent symbol whose value is this op's rank-0 result (``item()`` used as a size)
    binds = opt_prop_def(StringAttr)

    def reference(self, args, env):
        call_args, call_kwargs = decode_call(self.p("call"), args, env)
        out = resolve_callable(self.p("target"))(*call_args, **call_kwargs)
        outs = list(out) if isinstance(out, (tuple, list)) else ([] if out is None else [out])
        if not all(isinstance(o, (torch.Tensor, bool, int, float)) for o in outs) or len(outs) != len(env.result_dtypes):
            raise RuntimeError(f"{self.p('target')} returned {[type(o).__name__ for o in outs]}, "
                               f"expected {len(env.result_dtypes)} tensors")
        outs = [o if isinstance(o, torch.Tensor) else torch.tensor(o, device=env.device) for o in outs]  # item()
        return [o.to(dt) if o.dtype != dt else o for o, dt in zip(outs, env.result_dtypes)]


PROGRAM_OPS = [SymbolOp, GuardOp, YieldOp, ClusterOp, TorchOp]
