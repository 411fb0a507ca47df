"""Import an ``ExportedProgram`` (ATen-level FX graph) into a Blade module.

Every frontend (torch.export, ``torch.compile(backend="blade")``, TorchScript) ends here, so all
three land in the same ``blade`` tensor dialect. The importer walks the graph once:

* placeholders become function arguments (user inputs) or ``blade.weight`` ops (parameters,
  buffers, lifted constants, referenced by name);
* each ``call_function`` node goes through the ATen table (``aten_table.py``); SymInt arithmetic
  is evaluated symbolically and never becomes an op;
* a node the table does not know, or that uses a dtype Blade does not compile, becomes a
  ``blade.torch_op`` that runs in eager PyTorch, and is listed in the import report (or raises
  ``UnsupportedOpError`` in strict mode).

Result types come from the FakeTensor metadata, converted to Blade's canonical symbols; the
verifier then checks each op's own shape rule against them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import sympy
import torch
import torch.fx
import torch.utils._pytree as pytree
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp, StringAttr
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue

from blade.dialects.data_movement import ConstantOp, DimValueOp, WeightOp
from blade.dialects.program import CallableRef, TorchOp, bool_as_dim, callable_ref, encode_call, is_condition
from blade.dialects.types import TensorType, scalar_attr, tensor_type
from blade.frontend.eager_results import effect_call, is_scalar_result, is_with_effects, result_type
from blade.symbolic import ACTIVE_EQUALITIES, ACTIVE_RANGES
from blade.frontend.torch_symbols import SymbolMapping, build_symbol_mapping, import_guards
from blade.ir import set_input_names, write_symbol_table
from blade.shape_syntax import format_shape
from blade.symbolic import ShapeError

#: dtypes Blade compiles; anything else (complex, float8...) runs in eager fallback
COMPILED_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                   torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}


class UnsupportedOpError(RuntimeError):
    """Raised in strict mode for an op Blade cannot compile (names the op, shapes and why)."""


@dataclass
class UnsupportedOp:
    target: str
    node: str
    shapes: list[str]
    reason: str

    def __str__(self) -> str:
        return f"{self.target} (node {self.node}, inputs {', '.join(self.shapes) or '-'}): {self.reason}"


@dataclass
class ImportResult:
    module: ModuleOp
    input_names: list[str]
    in_spec: Any
    out_spec: Any
    #: per flat output: ("tensor", result index) or ("const", python value)
    outputs: list[tuple[str, Any]]
    #: blade.weight name -> where the tensor lives: ("param"|"buffer", fqn) or ("constant", key)
    weights: dict[str, tuple[str, str]]
    unsupported: list[UnsupportedOp] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: int arguments taken as sizes: (position among the program's inputs, index among the call's
    #: non-tensor leaves) each, where a size carrier goes (``call_signature.with_size_carriers``)
    size_inputs: tuple = ()
    #: flat outputs eager returns on another device than the program's (``torch.arange(n)`` with no
    #: device in a CUDA model is a CPU tensor): (flat output index, device) each; moved after a run
    output_devices: tuple = ()
    #: what the module writes in place, eager's side effects: ("input", program input index,
    #: result index) or ("buffer", buffer name, result index) each; the new values are extra results
    #: after the user outputs, copied into the caller's tensor / the module's buffer after a call
    mutations: tuple = ()


class NotLowered(Exception):
    """A handler cannot lower this particular use of an op; the node falls back to eager."""


Handler = Callable[..., Any]
HANDLERS: dict[Any, Handler] = {}


def handles(*targets: Any) -> Callable[[Handler], Handler]:
    """Register a handler for ATen overloads (``"add.Tensor"``) or Python callables."""

    def register(fn: Handler) -> Handler:
        for t in targets:
            if isinstance(t, str):
                packet, _, overload = t.partition(".")
                op = getattr(getattr(torch.ops.aten, packet, None), overload or "default", None)
                if op is not None:  # overloads missing from this torch version are skipped
                    HANDLERS[op] = fn
            else:
                HANDLERS[t] = fn
        return fn

    return register


class ImportCtx:
    """State of one import: the block being filled and what each FX node became."""

    def __init__(self, mapping: SymbolMapping, block: Block, strict: bool):
        self.mapping = mapping
        self.block = block
        self.strict = strict
        self.env: dict[torch.fx.Node, Any] = {}
        self.unsupported: list[UnsupportedOp] = []
        #: rank-0 integer tensors whose value is a known dim expression (size arithmetic)
        self.known_scalars: dict[torch.fx.Node, sympy.Expr] = {}
        self.node: torch.fx.Node | None = None

    # ------------------------------------------------------------------ emission
    def emit(self, op_cls: type[Operation], operands: list[SSAValue], result: TensorType | list[TensorType],
             **props: Attribute) -> Any:
        results = result if isinstance(result, list) else [result]
        op = op_cls.create(operands=operands, result_types=results,
                           properties={k: v for k, v in props.items() if v is not None})
        self.block.add_op(op)
        return list(op.results) if isinstance(result, list) else op.results[0]

    # ------------------------------------------------------------------ types
    def type_of(self, val: Any) -> TensorType:
        if not isinstance(val, torch.Tensor):
            raise NotLowered(f"expected a tensor value, got {type(val).__name__}")
        return tensor_type([self.mapping.convert(d) for d in val.shape], val.dtype)

    def out_type(self, node: torch.fx.Node | None = None) -> TensorType:
        node = node or self.node
        return self.type_of(node.meta["val"])

    # ------------------------------------------------------------------ operands
    def value(self, arg: Any, dtype: torch.dtype | None = None) -> SSAValue:
        """An SSA tensor for ``arg``: an FX node's value, or a rank-0 constant for a scalar."""
        if isinstance(arg, torch.fx.Node):
            v = self.env[arg]
            if isinstance(v, SSAValue):
                return v
            if isinstance(arg.meta.get("val"), torch.SymFloat) and isinstance(v, sympy.Expr) and not v.is_number:
                return self.float_from_sizes(v)
            arg = v  # a symbolic or Python scalar produced by size arithmetic
        if is_condition(arg) and not isinstance(arg, sympy.logic.boolalg.BooleanAtom):
            # a SymBool (``s0 > 1 or s1 == 3``) used as data: its exact 0/1 value as a dim
            return self.emit(DimValueOp, [], tensor_type([], torch.bool), value=_dims_attr([bool_as_dim(arg)]))
        if isinstance(arg, sympy.logic.boolalg.BooleanAtom):
            arg = bool(arg)
        if isinstance(arg, sympy.Expr) and not arg.is_Integer:
            return self.emit(DimValueOp, [], tensor_type([], torch.int64),
                             value=_dims_attr([arg]))
        if isinstance(arg, (bool, int, float, sympy.Expr)):
            return self.constant(arg)
        raise NotLowered(f"cannot use {arg!r} as a tensor operand")

    def float_from_sizes(self, e: sympy.Expr) -> SSAValue:
        """A rank-0 float32 tensor computing the float ``e`` of integer size expressions (a scale
        ``4 / floor(s2 / 8)`` of a resized position table): integer-valued subexpressions are
        ``blade.dim_value`` (the shape program's exact integers), the float arithmetic above them
        elementwise ops. A form outside sums, products, powers, floor/ceil and min/max is left to
        eager PyTorch, naming it."""
        from blade.dialects import elementwise as ew

        f32 = tensor_type([], torch.float32)

        def build(x: sympy.Expr) -> SSAValue:
            if x.is_number:
                return self.constant(float(x))
            if x.is_integer:
                i = self.emit(DimValueOp, [], tensor_type([], torch.int64), value=_dims_attr([x]))
                return self.emit(ew.CastOp, [i], f32)
            if isinstance(x, (sympy.Add, sympy.Mul, sympy.Max, sympy.Min)):
                cls = {sympy.Add: ew.AddOp, sympy.Mul: ew.MulOp, sympy.Max: ew.MaximumOp,
                       sympy.Min: ew.MinimumOp}[type(x)]
                args = [build(a) for a in x.args]
                acc = args[0]
                for a in args[1:]:
                    acc = self.emit(cls, [acc, a], f32)
                return acc
            if isinstance(x, (sympy.floor, sympy.ceiling)):
                return self.emit(ew.FloorOp if isinstance(x, sympy.floor) else ew.CeilOp, [build(x.args[0])], f32)
            if isinstance(x, sympy.Pow) and x.exp.is_number:
                base, p = build(x.base), x.exp
                if p == -1:
                    return self.emit(ew.DivOp, [self.constant(1.0), base], f32)
                if p == sympy.Rational(1, 2):
                    return self.emit(ew.SqrtOp, [base], f32)
                if p == sympy.Rational(-1, 2):
                    return self.emit(ew.RsqrtOp, [base], f32)
                if p.is_integer and 1 < p <= 4:
                    acc = base
                    for _ in range(int(p) - 1):
                        acc = self.emit(ew.MulOp, [acc, base], f32)
                    return acc
                if p.is_integer and -4 <= p < -1:
                    acc = base
                    for _ in range(-int(p) - 1):
                        acc = self.emit(ew.MulOp, [acc, base], f32)
                    return self.emit(ew.DivOp, [self.constant(1.0), acc], f32)
            raise NotLowered(f"a float computed from sizes ({e}) has a form ({type(x).__name__}) Blade does not "
                             "compute; the op runs in eager PyTorch with its value")

        return build(e)

    def size_value(self, e: Any) -> SSAValue:
        """A rank-0 int64 tensor of a size expression: a constant where it is a number, else the
        shape program's exact value (``blade.dim_value``). Index arithmetic over iotas uses it."""
        e = sympy.sympify(e)
        return self.constant(int(e)) if e.is_Integer else self.value(e)

    def constant(self, value: Any, dtype: torch.dtype | None = None) -> SSAValue:
        if dtype is None:  # PyTorch's wrapped-number types
            dtype = torch.bool if isinstance(value, bool) else (
                torch.float32 if isinstance(value, float) else torch.int64)
        return self.emit(ConstantOp, [], tensor_type([], dtype), value=scalar_attr(value, dtype))

    def sym(self, arg: Any) -> sympy.Expr:
        """A dimension expression for an int / SymInt argument."""
        if isinstance(arg, torch.fx.Node):
            if arg in self.known_scalars:
                return self.known_scalars[arg]
            arg = self.env[arg]
            if isinstance(arg, SSAValue):
                raise NotLowered("a tensor is used where a size is expected")
        if isinstance(arg, (int, torch.SymInt)):
            return self.mapping.convert(arg)
        if isinstance(arg, sympy.Expr):
            return arg
        raise NotLowered(f"expected a size, got {arg!r}")

    def syms(self, args: Any) -> list[sympy.Expr]:
        return [self.sym(a) for a in args]

    def scalar(self, arg: Any) -> Any:
        """A Python scalar argument (float/int/bool), resolving SymInt nodes to expressions."""
        if isinstance(arg, torch.fx.Node):
            v = self.env[arg]
            if isinstance(v, SSAValue):
                raise NotLowered("a tensor is used where a Python scalar is expected")
            return v
        return arg

    # ------------------------------------------------------------------ fallback
    def fallback(self, node: torch.fx.Node, reason: str) -> Any:
        """Run ``node`` in eager PyTorch: a ``blade.torch_op`` naming its callable (an ATen op, a
        Python operator or torch function by import path, a higher-order op, or a callable held in
        the process's fallback registry) and a template of its arguments."""
        target = _target_name(node.target)
        shapes = [format_shape(self.type_of(a.meta["val"]).shape) for a in _tensor_nodes(node)
                  if isinstance(a.meta.get("val"), torch.Tensor)]
        entry = UnsupportedOp(target, node.name, shapes, reason)
        if self.strict:
            raise UnsupportedOpError(f"Blade cannot compile {entry}. Set Config(fallback='eager') to "
                                     "run such ops in eager PyTorch instead.")
        val = node.meta.get("val")
        multi = isinstance(val, (tuple, list))
        vals = list(val) if multi else [val]
        if not all(isinstance(v, torch.Tensor) or is_scalar_result(v) for v in vals):  # [] for effect ops
            kinds = ", ".join(sorted({type(v).__name__ for v in vals})) or "nothing"
            raise UnsupportedOpError(f"cannot run {entry} in eager fallback either: it returns {kinds}, "
                                     "and a fallback call must return tensors or Python numbers")
        callee = callable_ref(node.target)
        operand_nodes = _tensor_nodes(node)
        index = {id(n): i for i, n in enumerate(operand_nodes)}
        operands = [self.value(n) for n in operand_nodes]

        def sub(a):
            label = None
            if isinstance(a, torch.fx.Node):
                if id(a) in index:
                    return a
                label = a.target if a.op == "get_attr" else None
                a = self.env[a]
            if isinstance(a, (torch.SymInt, torch.SymBool)):
                a = self.mapping.convert(a)
            if isinstance(a, int) and not isinstance(a, bool):
                return sympy.Integer(a)
            if isinstance(a, SSAValue):
                raise NotLowered("a tensor computed by Blade is nested where the fallback cannot pass it")
            if isinstance(a, (sympy.Basic, torch.dtype, torch.device, torch.memory_format, torch.layout)):
                return a  # (sympy symbols are callable: keep them away from the test below)
            if isinstance(a, torch.nn.Module) or (callable(a) and not isinstance(a, type)):
                return CallableRef(callable_ref(a, label))  # a subgraph of a higher-order op, a function
            return a

        leaf = lambda x: isinstance(x, torch.fx.Node)  # noqa: E731
        call = (pytree.tree_map(sub, list(node.args), is_leaf=leaf),
                pytree.tree_map(sub, dict(node.kwargs), is_leaf=leaf))
        try:
            template = encode_call(call, index)
        except TypeError as e:
            raise UnsupportedOpError(f"cannot run {entry} in eager fallback either: {e}") from e
        self.unsupported.append(entry)
        types = [result_type(self, v, target, i) for i, v in enumerate(vals)]
        op = TorchOp.create(operands=operands, result_types=types, properties={
            "target": StringAttr(callee), "call": StringAttr(template), "reason": StringAttr(reason)})
        self.block.add_op(op)
        return list(op.results) if multi else op.results[0]

def _input_shapes(ctx: ImportCtx, node) -> list[str]:
    out = []
    for a in _tensor_nodes(node):
        try:
            out.append(format_shape(ctx.type_of(a.meta["val"]).shape))
        except Exception:  # noqa: BLE001 - only for an error message
            out.append(str(tuple(a.meta["val"].shape)))
    return out


def _dims_attr(dims):
    from blade.dialects.types import DimsAttr

    return DimsAttr.from_dims(dims)


def _target_name(target: Any) -> str:
    """How reports name a node's callable: ``aten.add.Tensor``, ``operator.or_``, ``higher_order.cond``."""
    if isinstance(target, torch._ops.OpOverload):
        return f"{target.namespace}.{target._opname}.{target._overloadname}"
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"higher_order.{target.name()}"
    module = (getattr(target, "__module__", None) or "").replace("_operator", "operator")
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)
    return f"{module}.{name}" if module else name


def _tensor_nodes(node: torch.fx.Node) -> list[torch.fx.Node]:
    out: list[torch.fx.Node] = []
    for a in pytree.tree_leaves((node.args, node.kwargs)):
        if isinstance(a, torch.fx.Node) and isinstance(a.meta.get("val"), torch.Tensor) and a not in out:
            out.append(a)
    return out


def _uses_uncompiled_dtype(node: torch.fx.Node) -> str | None:
    vals = [node.meta.get("val")] + [a.meta.get("val") for a in _tensor_nodes(node)]
    for v in pytree.tree_leaves(vals):
        if isinstance(v, torch.Tensor) and v.dtype not in COMPILED_DTYPES:
            return f"dtype {v.dtype} is not compiled by Blade"
    return None


def _fake_shape_env(ep: ExportedProgram):
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if isinstance(val, torch.Tensor) and hasattr(val, "fake_mode"):
            return val.fake_mode.shape_env
    return None


def import_program(ep: ExportedProgram, *, strict: bool = False,
                   dim_ranges: dict[tuple[str, int], tuple[int, int | None]] | None = None) -> ImportResult:
    """Build a Blade module from ``ep``; see the module docstring for the rules."""
    from blade.frontend import aten_table  # noqa: F401 - registers the handlers

    sig = ep.graph_signature
    specs = {spec.arg.name: spec for spec in sig.input_specs if hasattr(spec.arg, "name")}
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    user_all = [n for n in placeholders if specs[n.name].kind == InputKind.USER_INPUT]
    # the program's inputs: tensors, and int arguments export kept symbolic (Config.int_arguments),
    # each passed as a size carrier (runtime/call_signature.py), in the call's flattening order
    symbolic = [n for n in user_all if isinstance(n.meta.get("val"), torch.SymInt)]
    for n in user_all:  # other Python scalars are specialised (the module recompiles when they change)
        val = n.meta.get("val")
        if not isinstance(val, (torch.Tensor, torch.SymInt, int, float, bool, str, type(None))):
            raise UnsupportedOpError(f"input '{n.name}' is a {type(val).__name__}; Blade compiles tensor "
                                     "inputs, and Python int/float/bool/str values as constants")
    shape_env = _fake_shape_env(ep)
    if shape_env is None and symbolic:
        shape_env = symbolic[0].meta["val"].node.shape_env
    tensors = [n for n in user_all if isinstance(n.meta.get("val"), torch.Tensor)]
    mapping = build_symbol_mapping(shape_env, [(n.name, tuple(n.meta["val"].shape)) for n in tensors],
                                   dim_ranges or {}, [(n.name, n.meta["val"]) for n in symbolic])
    ints = [n for n in symbolic if not mapping.convert(n.meta["val"]).is_number]  # else fixed by a guard
    user = [n for n in user_all if n in tensors or n in ints]
    notes = import_guards(mapping)
    constants = [n for n in user_all if not isinstance(n.meta.get("val"), torch.Tensor)]
    size_inputs = tuple((user.index(n), constants.index(n)) for n in ints)
    if "DynamicCache" in str(ep.call_spec.out_spec):
        notes.append("the output holds a transformers DynamicCache: the compiled module returns one too, "
                     "filled with the key/value tensors the program computes (pass use_cache=False to "
                     "skip computing and returning them)")

    block = Block(arg_types=[_type_of(mapping, n.meta["val"]) if n not in ints else
                             tensor_type([mapping.convert(n.meta["val"]) + 1], torch.int64) for n in user])
    ctx = ImportCtx(mapping, block, strict)
    for n, arg in zip(user, block.args):
        ctx.env[n] = arg if n not in ints else mapping.convert(n.meta["val"])  # an int's uses: its expression
    for n in user_all:
        if n not in ctx.env:
            val = n.meta.get("val")
            ctx.env[n] = int(mapping.convert(val)) if isinstance(val, torch.SymInt) else val
    weights: dict[str, tuple[str, str]] = {}
    for n in placeholders:
        spec = specs[n.name]
        if spec.kind == InputKind.USER_INPUT:
            continue
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            where = ("param" if spec.kind == InputKind.PARAMETER else "buffer", spec.target)
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            where = ("constant", spec.target)
        elif spec.kind == InputKind.TOKEN:  # effect ordering only: see eager_results.py
            ctx.env[n] = None
            continue
        else:
            raise UnsupportedOpError(f"input '{n.name}' of kind {spec.kind.name} is not supported")
        weights[spec.target] = where
        ctx.env[n] = ctx.emit(WeightOp, [], ctx.type_of(n.meta["val"]), name=StringAttr(spec.target))

    output_node = None
    ranges = ACTIVE_RANGES.set(mapping.table.ranges())  # what the op verifiers may assume
    equalities = ACTIVE_EQUALITIES.set(lambda: [sympy.expand(g.cond.lhs - g.cond.rhs) for g in mapping.table.guards
                                                if isinstance(g.cond, sympy.Eq)])
    try:
        for node in ep.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                output_node = node
                break
            if node.op == "get_attr":  # a subgraph (GraphModule) of a higher-order op such as cond
                ctx.env[node] = _get_attr(ep.graph_module, node.target)
                continue
            if node.op != "call_function":
                raise UnsupportedOpError(f"graph node {node.name} ({node.op}) is not supported")
            ctx.node = node
            try:
                ctx.env[node] = _import_node(ctx, node)
            except Exception as e:
                e.add_note(f"while importing node {node.name} ({_target_name(node.target)}) with inputs "
                           f"[{', '.join(_input_shapes(ctx, node))}]")
                raise
    finally:
        ACTIVE_RANGES.reset(ranges)
        ACTIVE_EQUALITIES.reset(equalities)

    assert output_node is not None
    all_outputs = [(a, spec) for a, spec in zip(output_node.args[0], sig.output_specs)
                   if spec.kind != OutputKind.TOKEN]
    written = (OutputKind.USER_INPUT_MUTATION, OutputKind.BUFFER_MUTATION)
    other = sorted({spec.kind.name for _, spec in all_outputs if spec.kind not in (OutputKind.USER_OUTPUT, *written)})
    if other:
        raise UnsupportedOpError(f"the program has outputs of kind {', '.join(other)}; Blade compiles inference "
                                 "programs (user outputs, and in-place writes to inputs and buffers)")
    kept = [(a, spec) for a, spec in all_outputs if spec.kind == OutputKind.USER_OUTPUT]
    results: list[SSAValue] = []
    outputs: list[tuple[str, Any]] = []
    output_devices: list[tuple[int, str]] = []
    device_types = {n.meta["val"].device.type for n in placeholders if isinstance(n.meta.get("val"), torch.Tensor)}
    program_device = next(iter(device_types - {"cpu"}), "cpu" if device_types else None)
    for a, _ in kept:
        v = ctx.env[a] if isinstance(a, torch.fx.Node) else a
        if isinstance(v, sympy.Expr) and not v.is_number and isinstance(a, torch.fx.Node):
            v = ctx.value(a)  # a size returned to the caller: computed at run time, not a constant
        if isinstance(v, SSAValue):
            # a Python number computed in eager (item()) travels as a rank-0 tensor
            scalar = isinstance(a, torch.fx.Node) and is_scalar_result(a.meta.get("val"))
            val = a.meta.get("val") if isinstance(a, torch.fx.Node) else None
            if (not scalar and isinstance(val, torch.Tensor) and program_device is not None
                    and val.device.type != program_device):
                output_devices.append((len(outputs), str(val.device)))
            outputs.append(("scalar" if scalar else "tensor", len(results)))
            results.append(v)
        else:
            outputs.append(("const", v))
    mutations = []
    user_names = [n.name for n in user]
    for a, spec in all_outputs:  # eager's in-place writes: their new values, written back after a call
        if spec.kind not in written:
            continue
        v = ctx.env[a] if isinstance(a, torch.fx.Node) else a
        if not isinstance(v, SSAValue):
            raise UnsupportedOpError(f"the program writes {spec.target} in place with a value Blade does not "
                                     f"compute ({type(v).__name__})")
        if spec.kind == OutputKind.USER_INPUT_MUTATION:
            if spec.target not in user_names:
                raise UnsupportedOpError(f"the program writes its input {spec.target} in place, which is not "
                                         "one of its tensor inputs")
            mutations.append(("input", user_names.index(spec.target), len(results)))
        else:
            mutations.append(("buffer", spec.target, len(results)))
        results.append(v)
    block.add_op(func.ReturnOp(*results))
    fn = func.FuncOp("forward", ([a.type for a in block.args], [r.type for r in results]), Region(block))
    set_input_names(fn, [n.name for n in user])
    module = ModuleOp([fn])
    write_symbol_table(module, mapping.table)
    return ImportResult(module, [n.name for n in user], ep.call_spec.in_spec, ep.call_spec.out_spec,
                        outputs, weights, ctx.unsupported, notes, size_inputs, tuple(output_devices),
                        tuple(mutations))


def _type_of(mapping: SymbolMapping, val: torch.Tensor) -> TensorType:
    return tensor_type([mapping.convert(d) for d in val.shape], val.dtype)


def _get_attr(root: torch.nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, torch.Tensor):
        raise UnsupportedOpError(f"graph attribute {target} is a tensor outside the graph signature; "
                                 "Blade reads weights from the exported program's inputs only")
    return obj


def _import_node(ctx: ImportCtx, node: torch.fx.Node) -> Any:
    if is_with_effects(node.target):
        return _import_with_effects(ctx, node)
    handler = HANDLERS.get(node.target)
    if handler is None:
        return ctx.fallback(node, f"no Blade lowering for {_target_name(node.target)}")
    if (why := _uses_uncompiled_dtype(node)) is not None and node.target is not operator.getitem:
        return ctx.fallback(node, why)
    mark = ctx.block.last_op
    try:
        out = handler(ctx, node, *node.args, **node.kwargs)
        _verify_new_ops(ctx.block, mark)
        return out
    except (NotLowered, ShapeError) as e:
        _discard_new_ops(ctx.block, mark)
        return ctx.fallback(node, str(e))
    except UnsupportedOpError:
        raise
    except Exception as e:  # noqa: BLE001 - a lowering bug must not reach the user: run the op eagerly
        _discard_new_ops(ctx.block, mark)
        return ctx.fallback(node, f"Blade's lowering failed ({type(e).__name__}: {' '.join(str(e).split())[:300]})")


def _new_ops(block: Block, mark: Operation | None) -> list[Operation]:
    ops = list(block.ops)
    return ops[ops.index(mark) + 1:] if mark is not None else ops


def _verify_new_ops(block: Block, mark: Operation | None) -> None:
    """Check the ops a handler emitted at once, so a wrong lowering falls back to eager for this
    node instead of failing the whole module's verification later."""
    for op in _new_ops(block, mark):
        op.verify()


def _discard_new_ops(block: Block, mark: Operation | None) -> None:
    for op in reversed(_new_ops(block, mark)):
        if not any(r.uses for r in op.results):
            block.erase_op(op)


def _import_with_effects(ctx: ImportCtx, node: torch.fx.Node) -> list[Any]:
    """``with_effects(token, op, *args)``: ``op`` runs in eager fallback; the token is dropped
    (the program keeps graph order). Returns the token slot as None, then the op's results."""
    view = effect_call(node)
    results = ctx.fallback(view, "an op with effects (torch.export effect token) runs in eager PyTorch")
    results = iter(results if isinstance(results, list) else [results])
    val = node.meta.get("val")
    rest = list(val[1:]) if isinstance(val, (tuple, list)) else []
    return [None] + [None if v is None else next(results) for v in rest]
