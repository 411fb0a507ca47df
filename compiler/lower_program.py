"""Lowering a compiled variant to a ``Program`` (``runtime/program.py``): the compiler's last step.

Input: the optimized module of one variant (after ``fuse-stitch``) and the frontend's weight
table. Output: plain data the runtime runs without the compiler: flat steps, values with their
dims as slots of one shape program, a liveness plan of the arena buffers and the generated
kernels (from ``codegen.emit.plan_kernel``) with their variant-selection tables.

Every symbolic quantity the runtime needs (each value's dims, buffer byte sizes, launch grids and
scalars, the predicates that choose a kernel variant, symbol ranges and guards) becomes one
expression of one ``ShapeProgram``; steps refer to them by slot index. Launch policy is decided
here, as data: a launch's ``table`` lists the variants in order of preference with the slot that
must hold for each and its grid; the runtime takes the first row that holds.

GroupNorm's two schedules are both in the table: register-resident rows (by the group's pixel
count) and a two-launch row (statistics + apply) whose chunking depends on the GPU's
multiprocessor count, a *device symbol* of the shape program, and whose workspaces are arena
values live during that step. With a ``target`` every kernel variant is also compiled to a cubin
(``codegen/aot.py``) stored beside its source.

Lowered so far: ``blade.fused`` groups (``launch``), views (``reshape``, ``permute``, ``expand``,
``slice``), every other tensor op of the dialect as a ``library_call`` of the ``torch`` provider,
and ``blade.torch_op`` as a ``fallback_call``. An op outside that set raises ``LoweringError``
naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

import sympy
import torch
from xdsl.dialects import func
from xdsl.ir import Block, SSAValue

from blade.codegen.emit import KernelPlan, iteration_space, plan_kernel
from blade.dialects.base import TensorOp
from blade.dialects.data_movement import ExpandOp, PermuteOp, ReshapeOp, SliceOp, WeightOp
from blade.dialects.kernel import FusedOp
from blade.dialects.program import ClusterOp, GuardOp, SymbolOp, TorchOp, YieldOp
from blade.dialects.types import DimsAttr, TensorType, attr_value
from blade.ir import entry_function, input_names, read_symbol_table
from blade.runtime.program import Buffer, KernelRole, Program, Step, StepKind, Value, ValueKind, environment
from blade.shape_program import ShapeProgram
from blade.shape_syntax import format_condition, format_dim, parse_dim_text
from blade.symbolic import ceildiv, make_symbol, product

MAX_KERNEL_ROWS = 2**31  # generated kernels index rows in int32
SM_COUNT = "sm_count"    # device symbol: multiprocessors of the GPU (the executor supplies it)
VIEW_OPS = {ReshapeOp: "reshape", PermuteOp: "permute", ExpandOp: "expand", SliceOp: "slice"}


class LoweringError(NotImplementedError):
    """An op (or a form of one) that the Program lowering does not cover yet."""


class _Slots:
    """The shape program under construction: one slot per distinct expression."""

    def __init__(self, symbols: list[str]):
        self.symbols = symbols
        self.exprs: list[sympy.Basic] = []
        self.index: dict[sympy.Basic, int] = {}

    def __call__(self, e) -> int:
        e = sympy.sympify(e)
        if e not in self.index:
            self.index[e] = len(self.exprs)
            self.exprs.append(e)
        return self.index[e]


def lower_program(compiled, target: tuple[str, int, int] | None = None, cache_dir: str | None = None,
                  bounds_check: bool = False) -> Program:
    """``compiled``: a ``pipeline.CompiledProgram`` (module after the pass pipeline, export, weights).
    ``target`` (e.g. ``("cuda", 90, 32)``): also compile every kernel variant to a cubin for it.
    ``bounds_check``: kernels with offset assertions (``Config.bounds_check``)."""
    return lower_module(compiled.module, dict(compiled.import_result.weights), dict(compiled.ep.constants),
                        target=target, cache_dir=cache_dir, bounds_check=bounds_check)


def lower_module(module, weights: dict[str, tuple[str, str]] | None = None,
                 constants: dict[str, torch.Tensor] | None = None, target: tuple[str, int, int] | None = None,
                 cache_dir: str | None = None, bounds_check: bool = False) -> Program:
    """Lower an optimized module. ``weights``: weight name -> (``"param"``, ``"buffer"`` or
    ``"constant"``, export target), as the frontend records it (absent names are parameters of
    that name); ``constants``: the export's lifted constant tensors by target (stored as blobs);
    ``target``: compile the kernels to cubins for that GPU (``codegen/aot.py``; works on a machine
    without one), stored as blobs beside the sources, the artifact then being for that arch;
    ``bounds_check``: every kernel also receives the element span of each tensor it addresses and
    asserts each offset lies inside it (``codegen/emit.py``; cubins compiled in Triton's debug
    mode, the source run with assertions on the interpreter)."""
    lowering = _Lowering(module, weights or {}, constants or {}, bounds_check)
    program = lowering.run()
    if target is not None:
        _attach_cubins(program, lowering.plans, target, cache_dir)
    return program


def _attach_cubins(program: Program, plans: dict[str, KernelPlan], target: tuple[str, int, int],
                   cache_dir: str | None) -> None:
    """Every variant's cubin and launch metadata (``kernels[key]["cubins"][variant]``)."""
    from blade.codegen.aot import compile_plans

    compiled = compile_plans(list(plans.values()), target=target, root=cache_dir, load=True)
    for (key, _), cp in zip(plans.items(), compiled):
        cubins = {}
        for i, kernel in cp.kernels.items():
            md = kernel.metadata
            cubins[str(i)] = {"blob": program.add_blob(kernel.asm["cubin"]), "entry": md.name,
                              "shared": md.shared, "num_warps": md.num_warps,
                              "global_scratch": getattr(md, "global_scratch_size", 0) or 0,
                              "profile_scratch": getattr(md, "profile_scratch_size", 0) or 0}
            if getattr(md, "num_ctas", 1) != 1:
                raise NotImplementedError(f"kernel {md.name} was compiled for {md.num_ctas} CTAs per cluster; "
                                          "the driver launcher launches one")
        program.kernels[key]["cubins"] = cubins
    program.meta["gpu_arch"] = f"sm_{target[1]}"


class _Lowering:
    def __init__(self, module, weights: dict[str, tuple[str, str]], constants: dict[str, torch.Tensor],
                 bounds_check: bool = False):
        self.module = module
        self.bounds_check = bounds_check
        self.constants = constants
        self.weight_table = weights
        self.table = read_symbol_table(self.module)
        self.slots = _Slots(list(self.table.symbols))
        self.values: list[Value] = []
        self.ids: dict[SSAValue, int] = {}
        self.steps: list[Step] = []
        self.kernels: dict[str, dict[str, Any]] = {}
        self.plans: dict[str, KernelPlan] = {}
        self.program = Program([], [], [], [], 0, [], [], [], [], [])

    # ------------------------------------------------------------------ driver
    def run(self) -> Program:
        fn = entry_function(self.module)
        names = input_names(fn)
        p = self.program
        p.symbols = list(self.table.symbols)
        p.input_names = names
        for i, arg in enumerate(fn.body.block.args):
            self.ids[arg] = self._value(arg.type, ValueKind.INPUT, index=i)
            p.bindings += self._bindings(i, arg.type)
        outs = self._block(fn.body.block)
        p.outputs = outs
        self._checks()
        self._plan_buffers()
        used = set().union(*(e.free_symbols for e in self.slots.exprs)) if self.slots.exprs else set()
        p.device_symbols = [SM_COUNT] if any(x.name == SM_COUNT for x in used) else []
        sp = ShapeProgram(self.slots.exprs, p.symbols + p.device_symbols)
        p.shape_code, p.nslots = sp.code, len(self.slots.exprs)
        p.slot_text = [_text(e) for e in self.slots.exprs]
        p.values, p.steps, p.kernels = self.values, self.steps, self.kernels
        p.meta = dict(environment(), gpu_arch=None)  # a host artifact until cubins are attached
        return p

    def _bindings(self, i: int, t: TensorType) -> list[dict[str, int]]:
        """Input dims of the form ``coeff * symbol + offset`` determine the symbol (first one wins;
        every other dim is checked against its slot by the executor). torch.export writes a dim
        that a guard made even or odd that way (``2*s2``, ``2*s3 - 1``)."""
        out = []
        for j, d in enumerate(self._shape(t, "input")):
            offset, term = d.as_coeff_Add()
            coeff, rest = term.as_coeff_Mul()
            if (rest.is_Symbol and coeff.is_Integer and int(coeff) > 0 and offset.is_Integer
                    and rest.name in self.slots.symbols):
                out.append({"symbol": self.slots.symbols.index(rest.name), "input": i, "dim": j,
                            "coeff": int(coeff), "offset": int(offset)})
        return out

    def _checks(self) -> None:
        checks = []
        for info in self.table.symbols.values():
            # compared as a plain integer: to sympy the (positive) symbol is >= 1 already, and
            # ``s0 >= 1`` would fold to True and let a size-0 dim through
            s = sympy.Symbol(info.symbol.name, integer=True)
            checks.append({"slot": self.slots(sympy.Ge(s, info.lo)),
                           "message": f"{info.name} >= {info.lo} ({info.origin})"})
            if info.hi is not None:
                checks.append({"slot": self.slots(sympy.Le(s, info.hi)),
                               "message": f"{info.name} <= {info.hi} ({info.origin})"})
        for g in self.table.guards:
            why = f" ({g.reason})" if g.reason else ""
            checks.append({"slot": self.slots(g.cond), "message": f"guard {format_condition(g.cond)}{why}"})
        self.program.checks = checks + self.program.checks

    # ------------------------------------------------------------------ values
    def _shape(self, t, what: str) -> tuple:
        if not isinstance(t, TensorType) or any(d is None for d in t.shape):
            raise LoweringError(f"{what}: type {t} has unknown dims; the Program needs every dim as an expression")
        return tuple(sympy.sympify(d) for d in t.shape)

    def _value(self, t: TensorType, kind: ValueKind, what: str = "", **kw) -> int:
        dims = [self.slots(d) for d in self._shape(t, what or kind.value)]
        self.values.append(Value(kind.value, str(t.dtype).removeprefix("torch."), dims, **kw))
        return len(self.values) - 1

    def _results(self, op, kind: ValueKind = ValueKind.ARENA) -> list[int]:
        ids = []
        for r in op.results:
            ids.append(self._value(r.type, kind, what=f"result of {op.name}"))
            self.ids[r] = ids[-1]
        return ids

    # ------------------------------------------------------------------ ops
    def _block(self, block: Block) -> list[int]:
        for op in block.ops:
            if isinstance(op, (func.ReturnOp, YieldOp)):
                return [self.ids[v] for v in op.operands]
            if isinstance(op, ClusterOp):
                for arg, v in zip(op.body.block.args, op.inputs):
                    self.ids[arg] = self.ids[v]
                for r, v in zip(op.results, self._block(op.body.block)):
                    self.ids[r] = v
            elif isinstance(op, (SymbolOp, GuardOp)):
                continue
            elif isinstance(op, WeightOp):
                self._weight(op)
            elif isinstance(op, FusedOp):
                self._launch(op)
            elif type(op) in VIEW_OPS:
                self._view(op)
            elif isinstance(op, TorchOp):
                self._fallback(op)
            elif isinstance(op, TensorOp):
                ins = [self.ids[v] for v in op.operands]
                self._step(StepKind.LIBRARY_CALL, op.name.removeprefix("blade."), ins, self._results(op),
                           provider="torch", attrs=self._attrs(op))
            else:
                raise LoweringError(f"the Program lowering does not cover {op.name} yet")
        raise LoweringError("block without a terminator")

    def _step(self, kind: StepKind, op: str, ins: list[int], outs: list[int], **kw) -> None:
        self.steps.append(Step(kind.value, op, ins, outs, **kw))

    def _attrs(self, op: TensorOp) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, a in op.properties.items():
            if isinstance(a, DimsAttr):
                out[name] = [{"slot": self.slots(d)} for d in a.data]
                continue
            try:
                v = attr_value(a)
            except TypeError as e:
                raise LoweringError(f"{op.name}: property '{name}' ({a}) has no plain-data form in a Program") from e
            out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def _weight(self, op: WeightOp) -> None:
        name = op.p("name")
        kind, target = self.weight_table.get(name, ("param", name))
        if kind in ("param", "buffer"):
            self.ids[op.results[0]] = self._value(op.out_type, ValueKind.WEIGHT, name=name)
            self.program.weights[name] = {"kind": kind, "target": target}
            return
        t = self.constants.get(target) if kind == "constant" else None
        if t is None:
            raise LoweringError(f"weight '{name}' ({kind} {target}) is neither a parameter, a buffer nor a "
                                "lifted constant of the export")
        data = t.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
        self.ids[op.results[0]] = self._value(op.out_type, ValueKind.CONSTANT, blob=self.program.add_blob(data))

    def _view(self, op: TensorOp) -> None:
        kind = VIEW_OPS[type(op)]
        self._step(StepKind.VIEW, kind, [self.ids[op.operands[0]]], self._results(op, ValueKind.VIEW),
                   attrs=self._attrs(op))

    def _fallback(self, op: TorchOp) -> None:
        def slots(a):
            if isinstance(a, list):
                return [slots(x) for x in a]
            if isinstance(a, dict):
                if "d" in a:
                    return {"slot": self.slots(parse_dim_text(a["d"]))}
                return {k: slots(v) for k, v in a.items()}
            return a

        call = slots(json.loads(op.p("call")))
        self._step(StepKind.FALLBACK_CALL, op.p("target"), [self.ids[v] for v in op.inputs], self._results(op),
                   attrs={"call": call, "reason": op.p("reason", "")})

    # ------------------------------------------------------------------ kernels
    def _launch(self, op: FusedOp) -> None:
        plan = plan_kernel(op, bounds_check=self.bounds_check)
        key = self._kernel(plan)
        space = self._shape(iteration_space(op), f"blade.fused {plan.label}")
        m, k = product(space[:-1]), (space[-1] if space else sympy.Integer(1))
        rows_ok = self.slots(sympy.Lt(m, MAX_KERNEL_ROWS))
        if all(c["slot"] != rows_ok for c in self.program.checks):
            self.program.checks.append({"slot": rows_ok, "message": f"kernel {plan.name} ({plan.label}): rows "
                                        f"{format_dim(m)} < 2**31 (generated kernels index rows in int32)"})
        attrs: dict[str, Any] = {"space": [self.slots(d) for d in space], "M": self.slots(m), "K": self.slots(k)}
        if plan.kind == "group_norm":
            attrs["P"] = self.slots(product(space[1:-1]))
        table = self._table(plan, space, m, k)
        if plan.kind == "group_norm":  # the two-launch schedule's workspaces live in the arena
            two = table[-1]
            attrs["scratch"] = [self._scratch(two.pop("partial_elems")), self._scratch(two.pop("stats_elems"))]
        self._step(StepKind.LAUNCH, key, [self.ids[v] for v in op.inputs], self._results(op), attrs=attrs,
                   table=table)

    def _scratch(self, elems) -> int:
        """An fp32 workspace of one launch step (an arena value live during that step only)."""
        self.values.append(Value(ValueKind.ARENA.value, "float32", [self.slots(elems)]))
        return len(self.values) - 1

    def _kernel(self, plan: KernelPlan) -> str:
        data = {"name": plan.name, "kind": plan.kind, "label": plan.label, "rank": plan.rank,
                "inputs": [asdict(s) for s in plan.inputs], "outputs": plan.outputs, "addressing": plan.addressing,
                "needed_row_dims": plan.needed_row_dims(), "static_k": plan.static_k,
                "num_groups": plan.num_groups, "eps": plan.eps, "bounds_check": plan.bounds_check,
                "variants": [{"entry": v.kernel, "role": _role(plan, v.kernel).value, "constexprs": v.constexprs,
                              "aligned": v.aligned, "num_warps": v.num_warps,
                              "signature": list(plan.signature(v.kernel).items())} for v in plan.variants]}
        data["source"] = self.program.add_blob(plan.source.encode())
        key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:20]  # content hash
        self.kernels[key] = data
        self.plans[key] = plan
        return key

    def _table(self, plan: KernelPlan, space: tuple, m, k) -> list[dict[str, Any]]:
        """Variant rows in order of preference: ``when`` (a slot that must be non-zero, or None),
        ``aligned`` (needs 16-byte aligned pointers and strides, checked per call) and ``grid``."""
        rows = []
        order = sorted(range(len(plan.variants)), key=lambda i: not plan.variants[i].aligned)
        if plan.kind in ("pointwise", "row_norm"):
            for i in order:
                v = plan.variants[i]
                bm, bk = v.constexprs["BLOCK_M"], v.constexprs["BLOCK_K"]
                when = None
                if plan.kind == "pointwise" and plan.static_k is None:  # tile width by K (see launch.py)
                    when = self.slots(sympy.Lt(k, 128) if bk == 32 else sympy.Ge(k, 128))
                gy = 1 if plan.kind == "row_norm" else ceildiv(k, bk)
                rows.append({"variant": i, "when": when, "aligned": v.aligned,
                             "grid": [self.slots(ceildiv(m, bm)), self.slots(gy), self.slots(1)]})
            return rows
        # group_norm: the smallest register-resident tile that holds a group's pixels
        p = product(space[1:-1])
        res = [i for i in range(len(plan.variants)) if plan.variants[i].kernel.endswith("_res")]
        res.sort(key=lambda i: (plan.variants[i].constexprs["BLOCK_M"], not plan.variants[i].aligned))
        for i in res:
            v = plan.variants[i]
            rows.append({"variant": i, "when": self.slots(sympy.Le(p, v.constexprs["BLOCK_M"])), "aligned": v.aligned,
                         "grid": [self.slots(space[0] * plan.num_groups), self.slots(1), self.slots(1)]})
        rows.append(self._two_launch(plan, space, m, k, order))
        return rows

    def _two_launch(self, plan: KernelPlan, space: tuple, m, k, order: list[int]) -> dict[str, Any]:
        """GroupNorm statistics + apply (groups too large for registers), as launch.py sizes it:
        enough (image, group block, chunk) programs to fill the GPU twice (``sm_count`` is a
        device symbol of the shape program), at most CHMAX chunks, at least two loop steps each."""
        n, p, g = space[0], product(space[1:-1]), plan.num_groups
        sms = make_symbol(SM_COUNT)
        stats, apply, sizes = [], [], set()
        for i in order:
            v = plan.variants[i]
            c = v.constexprs
            if v.kernel.endswith("_stats"):
                block_m, gblk = c["BLOCK_M"] * c["UNROLL"], g // c["GB"]
                per_column = _ceil(2 * sms, sympy.Max(1, n * gblk))  # an empty batch (n = 0) launches nothing
                first = sympy.Max(1, sympy.Min(c["CHMAX"], per_column, _ceil(p, 2 * block_m)))
                rows_per_chunk = _ceil(_ceil(p, first), block_m) * block_m
                nchunks = _ceil(p, rows_per_chunk)
                sizes.add(nchunks)
                stats.append({"variant": i, "when": None, "aligned": v.aligned,
                              "grid": [self.slots(n * gblk), self.slots(nchunks), self.slots(1)],
                              "nchunks": self.slots(nchunks), "rows_per_chunk": self.slots(rows_per_chunk),
                              "counters": self.slots(n * gblk)})
            elif v.kernel.endswith("_apply"):
                bm, bk = c["BLOCK_M"], c["BLOCK_K"]
                single = sympy.Eq(sympy.Mod(p, bm), 0)  # every tile inside one image
                apply.append({"variant": i, "when": self.slots(single if c["SINGLE_IMAGE"] else sympy.Not(single)),
                              "aligned": v.aligned, "grid": [self.slots(ceildiv(m, bm)), self.slots(ceildiv(k, bk)),
                                                             self.slots(1)]})
        if len(sizes) != 1:
            raise LoweringError(f"kernel {plan.name}: GroupNorm statistics variants chunk differently")
        return {"variant": None, "when": None, "aligned": False, "schedule": "two_launch", "grid": [],
                "stats": stats, "apply": apply, "partial_elems": n * sizes.pop() * g * 2, "stats_elems": n * g * 2}

    # ------------------------------------------------------------------ buffers
    def _plan_buffers(self) -> None:
        """Liveness of every arena value (views extend their base's life); program outputs (and the
        bases of outputs that are views) get their own allocations instead."""
        base: dict[int, int] = {}
        for s in self.steps:
            if s.kind == StepKind.VIEW.value:
                base[s.outputs[0]] = base.get(s.inputs[0], s.inputs[0])
        for o in self.program.outputs:
            root = base.get(o, o)
            if self.values[root].kind == ValueKind.ARENA.value:
                self.values[root].kind = ValueKind.OUTPUT.value
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        for i, s in enumerate(self.steps):
            for v in s.outputs + s.attrs.get("scratch", []):
                first.setdefault(base.get(v, v), i)
            for v in s.inputs + s.attrs.get("scratch", []):
                last[base.get(v, v)] = i
        buffers = []
        for v, val in enumerate(self.values):
            if val.kind != ValueKind.ARENA.value:
                continue
            itemsize = torch.empty((), dtype=getattr(torch, val.dtype)).element_size()
            nbytes = product(self.slots.exprs[d] for d in val.dims) * itemsize
            val.buffer = len(buffers)
            buffers.append(Buffer(v, self.slots(nbytes), first[v], last.get(v, first[v])))
        self.program.buffers = buffers


def _text(e) -> str:
    """A slot's expression in Blade's dim syntax (for people: ``Program.describe``, errors)."""
    try:
        if isinstance(e, (sympy.logic.boolalg.BooleanAtom, sympy.logic.boolalg.Boolean)):
            return format_condition(e) if not isinstance(e, sympy.logic.boolalg.BooleanAtom) else str(e).lower()
        return format_dim(e)
    except Exception:  # noqa: BLE001 - a form the dim syntax cannot print: sympy's own text
        return str(e)


def _ceil(a, b) -> sympy.Expr:
    """``ceil(a / b)`` for positive ``b`` that may hold symbols (kept as one ceiling, which the
    shape program evaluates as an integer ceiling division)."""
    return sympy.ceiling(sympy.Mul(a, sympy.Pow(b, -1, evaluate=False), evaluate=False), evaluate=False)


def _role(plan: KernelPlan, entry: str) -> KernelRole:
    if plan.kind == "pointwise":
        return KernelRole.POINTWISE
    if plan.kind == "row_norm":
        return KernelRole.ROW_NORM
    for suffix, role in (("_res", KernelRole.GN_RESIDENT), ("_stats", KernelRole.GN_STATS),
                         ("_apply", KernelRole.GN_APPLY)):
        if entry.endswith(suffix):
            return role
    raise LoweringError(f"kernel {plan.name}: entry point {entry} of a {plan.kind} kernel has no role")
