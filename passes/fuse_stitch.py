"""``fuse-stitch``: group memory-bound ops into ``blade.fused`` kernels (AStitch-style).

Policy, applied inside each cluster in program order:

1. *Stitch/input fusion around a reduction anchor.* An anchor is a ``group_norm`` in NHWC layout
   (channels static, divisible by the group count), a ``layer_norm`` over the last dim, or a
   ``softmax`` over the last dim (the reduced size static and at most 16384). The group takes

   - the elementwise producers of the anchor's input that have the same shape (a residual add, a
     time-embedding bias); such a producer read elsewhere too becomes an extra kernel output, so
     the sum is written once, by the kernel that also normalises it;
   - the chain of elementwise consumers of the anchor's result with that shape (SiLU, a scale).

       %h = add %conv, %temb ; %n = group_norm %h ; %y = silu %n     ->  one kernel (kind group_norm)
       %h = add %attn, %res  ; %n = layer_norm %h                    ->  one kernel, outputs %h, %n

2. *Loop fusion.* Other elementwise ops join the group of an elementwise producer with the same
   result shape (one iteration space, operands broadcast into it); otherwise they start one. A
   1-D ``iota`` starts a group (its value is the element index), which its same-shape consumers
   join:

       %i = iota ; %e = mul %i, %c ; %f = exp %e                       ->  one kernel writing %f

       %a = slice %p (view) ; %g = slice %p (view) ; %y = mul %a, (gelu %g)   ->  one kernel (GEGLU)

   A *row gather* (``embedding``, or ``index`` by one integer tensor per dim but the last) starts
   a pointwise group the same way, or joins a reduction anchor's prologue: the kernel reads each
   row's index once and loads the row from the table through its strides (``blade.gather_rows``,
   the index tensors viewed with a trailing size-1 dim). Token plus position embeddings and the
   LayerNorm after them are one kernel, and no gather is a library call (a Python step):

       %t = embedding %wte, %ids ; %s = add %t, %p ; %n = layer_norm %s  ->  one kernel (row_norm)

3. *Upsample fusion.* A channels-last nearest ``upsample`` by whole factors ends a pointwise
   group: it joins the group of its producer when that group's only output is the upsample's
   input (else it is a group by itself). The kernel iterates over the upsampled output and reads
   every input at ``(h // fh, w // fw)``: nearest upsampling commutes with elementwise ops, so
   the residual sum is never written at the low resolution, and PyTorch's NHWC upsample kernel
   (slow: 229 us for one VAE upsample at 512 px on an H100) is not used.

       %r = add %conv, %bias ; %s = add %x, %r ; %u = upsample %s   ->  one kernel writing %u

4. *Boundaries.* Library ops (conv, linear, matmul, attention), views (reshape,
   permute, slice, expand: executed as strided views, read by kernels through their strides),
   other data movement (concat, pad) and eager fallbacks are never inside a group. A group
   whose input comes straight from a conv/linear/matmul is marked ``blade.epilogue_of`` for the
   later GEMM-epilogue fusion.

Legality uses statically known shape facts only (``known_equal`` on symbolic dims); a group is
placed at its last member, so every value it writes must be read only after that point.
Rank-0 constants read by a group are copied into it (they become literals in the kernel).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, StringAttr, i64
from xdsl.ir import Block, Operation, Region, SSAValue

from blade.dialects.data_movement import ConstantOp, EmbeddingOp, GatherRowsOp, IndexOp, IotaOp, ReshapeOp, UpsampleOp
from blade.dialects.elementwise import BinaryElementwiseOp, UnaryElementwiseOp, WhereOp
from blade.dialects.kernel import FusedOp
from blade.dialects.program import ClusterOp, YieldOp
from blade.dialects.structured import AttentionOp, ConvOp, GroupNormOp, LayerNormOp, LinearOp, MatmulOp, SoftmaxOp
from blade.dialects.types import TensorType
from blade.ir import ModuleOp, ModulePass, entry_function
from blade.symbolic import known_equal, static_value

MAX_ROW = 16384          # largest reduced row a row_norm kernel holds in registers
MAX_CHANNELS = 4096      # largest channel count of a group_norm kernel tile
_COMPILED_FLOATS = ("f16", "bf16", "f32")
EPILOGUE_SOURCES = (ConvOp, LinearOp, MatmulOp, AttentionOp)


def same_shape(a: TensorType, b: TensorType) -> bool:
    return a.rank == b.rank and all(x is not None and y is not None and known_equal(x, y)
                                    for x, y in zip(a.shape, b.shape))


def is_fusible_elementwise(op: Operation) -> bool:
    if not isinstance(op, (UnaryElementwiseOp, BinaryElementwiseOp, WhereOp)):
        return False
    types = [v.type for v in (*op.operands, *op.results)]
    if not all(isinstance(t, TensorType) for t in types):
        return False
    if op.results[0].type.rank == 0:
        return False  # scalar arithmetic stays with PyTorch
    return all(_kernel_dtype_ok(t) for t in types)


def is_fusible_iota(op: Operation) -> bool:
    """A 1-D ``iota`` (``start + step * i``) starts a pointwise group: the kernel computes it from
    its element index, so the positions a timestep embedding or a mask is made from are not a
    library call of their own (a Python step in the C++ step loop). Only pointwise groups over its
    own shape take it (their members all have that shape: the index is the iteration index)."""
    return isinstance(op, IotaOp) and op.out_type.rank == 1 and str(op.out_type.element_type) != "i1" \
        and _kernel_dtype_ok(op.out_type)


def gather_operands(op: Operation) -> tuple[SSAValue, list[SSAValue], bool] | None:
    """(table, index tensors, whether negative indices wrap) of a row gather a kernel can do:
    ``embedding`` (a 2-D table), or ``index`` whose index tensors (integers, all of one shape)
    select along every dim of its input but the last; else None."""
    if isinstance(op, EmbeddingOp):
        table, idx, wrap = op.operands[0], [op.operands[1]], False
        if table.type.rank != 2:
            return None
    elif isinstance(op, IndexOp):
        table, idx, wrap = op.operands[0], list(op.operands[1:]), True
        if list(op.p("indexed")) != list(range(len(idx))) or table.type.rank != len(idx) + 1:
            return None
        first = idx[0].type
        if any(not same_shape(v.type, first) for v in idx[1:]):
            return None
    else:
        return None
    out = op.results[0].type
    if not (_kernel_dtype_ok(table.type) and _kernel_dtype_ok(out)) or str(table.type.element_type) == "i1":
        return None
    if any(str(v.type.element_type) not in ("i64", "i32") for v in idx):
        return None
    if out.rank != idx[0].type.rank + 1:
        return None
    return table, idx, wrap


def is_fusible_gather(op: Operation) -> bool:
    return gather_operands(op) is not None


def _reads_inside(members: list[Operation]) -> bool:
    """Whether a gather among ``members`` reads its table or an index tensor made by another
    member: a kernel reads those from memory (kernel inputs), never from its own registers."""
    inside = set(members)
    for m in members:
        if is_fusible_gather(m):
            table, idx, _ = gather_operands(m)
            if any(v.owner in inside for v in (table, *idx)):
                return True
    return False


def _kernel_dtype_ok(t: TensorType) -> bool:
    name = str(t.element_type)
    return name in _COMPILED_FLOATS or name in ("i64", "i32", "i1")


def anchor_kind(op: Operation) -> str | None:
    if isinstance(op, GroupNormOp) and op.channels_last and op.in_type(0).rank >= 3:
        c = static_value(op.in_type(0).shape[-1])
        g = op.p("num_groups")
        if c is not None and c % g == 0 and c <= MAX_CHANNELS and _kernel_dtype_ok(op.in_type(0)):
            return "group_norm"
    if isinstance(op, LayerNormOp) and op.p("normalized_ndim") == 1:
        k = static_value(op.in_type(0).shape[-1])
        if k is not None and k <= MAX_ROW and _kernel_dtype_ok(op.in_type(0)):
            return "row_norm"
    if isinstance(op, SoftmaxOp) and op.p("dim") in (-1, op.in_type(0).rank - 1):
        k = static_value(op.in_type(0).shape[-1])
        if k is not None and k <= MAX_ROW and _kernel_dtype_ok(op.in_type(0)):
            return "row_norm"
    return None


@dataclass
class Group:
    kind: str
    members: list[Operation] = field(default_factory=list)


def upsample_factors(op: Operation) -> tuple[int, ...] | None:
    """Whole spatial factors of a fusible (NHWC, nearest) upsample, else None."""
    if not isinstance(op, UpsampleOp) or op.p("layout", "nchw") != "nhwc" or op.p("mode") != "nearest":
        return None
    t_in, t_out = op.in_type(0), op.out_type
    if t_in.rank != 4 or not _kernel_dtype_ok(t_in) or not known_equal(t_in.shape[0], t_out.shape[0]) \
            or not known_equal(t_in.shape[3], t_out.shape[3]):
        return None
    factors = []
    for a, b in zip(t_in.shape[1:3], t_out.shape[1:3]):
        ratio = (b / a).simplify() if a != 0 else None
        if ratio is None or not ratio.is_Integer or int(ratio) < 1:
            return None
        factors.append(int(ratio))
    return tuple(factors)


@dataclass(frozen=True)
class FuseStitch(ModulePass):
    name = "fuse-stitch"

    def apply(self, ctx, op: ModuleOp) -> None:
        fn = entry_function(op)
        blocks = [o.body.block for o in fn.body.block.ops if isinstance(o, ClusterOp)] or [fn.body.block]
        next_id = 0
        for block in blocks:
            for group in plan_groups(block):
                _materialize(block, group, next_id)
                next_id += 1


def plan_groups(block: Block) -> list[Group]:
    ops = [o for o in block.ops if not isinstance(o, YieldOp) and o.name != "func.return"]
    index = {o: i for i, o in enumerate(ops)}
    owner: dict[Operation, Group] = {}
    groups: list[Group] = []

    def external_users_after(members: list[Operation], position: int) -> bool:
        for m in members:
            for r in m.results:
                for use in r.uses:
                    u = use.operation
                    if u not in members and index.get(u, len(ops)) <= position:
                        return False
        return True

    # 1. reduction anchors with their prologue and epilogue
    for op in ops:
        kind = anchor_kind(op)
        if kind is None or op in owner:
            continue
        members = [op]
        in_type = op.operands[0].type
        stack = [op.operands[0]]
        while stack:
            p = stack.pop().owner
            if not isinstance(p, Operation) or p in owner or p in members \
                    or not (is_fusible_elementwise(p) or (kind == "row_norm" and is_fusible_gather(p))):
                continue
            if not same_shape(p.results[0].type, in_type) or not external_users_after(members + [p], index[op]) \
                    or _reads_inside(members + [p]):
                continue
            members.append(p)
            if not is_fusible_gather(p):  # a gather's table and indices are always kernel inputs
                stack.extend(p.operands)
        last = op
        while True:
            users = [u.operation for u in last.results[0].uses]
            if len(users) != 1:
                break
            c = users[0]
            if c in owner or not is_fusible_elementwise(c) or not same_shape(c.results[0].type, op.results[0].type):
                break
            if not external_users_after(members + [c], index[c]):
                break
            members.append(c)
            last = c
        g = Group(kind, sorted(members, key=index.__getitem__))
        groups.append(g)
        for m in members:
            owner[m] = g

    # 2. loop fusion of the remaining elementwise ops: join (and merge) the pointwise groups of
    #    every same-shape elementwise producer
    for op in ops:
        if op in owner or not (is_fusible_elementwise(op) or is_fusible_iota(op) or is_fusible_gather(op)):
            continue
        candidates: list[Group] = []
        for v in op.operands if not is_fusible_gather(op) else ():  # a gather starts a group
            p = v.owner
            g = owner.get(p) if isinstance(p, Operation) else None
            if g is not None and g.kind == "pointwise" and g not in candidates \
                    and same_shape(p.results[0].type, op.results[0].type):
                candidates.append(g)
        merged: list[Operation] = []
        chosen: list[Group] = []
        for g in candidates:
            joined = merged + g.members + [op]
            if external_users_after(joined, index[op]) and not _reads_inside(joined):
                merged += g.members
                chosen.append(g)
        if chosen:
            target = chosen[0]
            for g in chosen[1:]:
                groups.remove(g)
                for m in g.members:
                    owner[m] = target
            target.members = sorted(merged, key=index.__getitem__)
        else:
            target = Group("pointwise")
            groups.append(target)
        target.members.append(op)
        owner[op] = target

    # 3. nearest upsamples end the pointwise group of their producer (or form one)
    for op in ops:
        if op in owner or upsample_factors(op) is None:
            continue
        p = op.operands[0].owner
        g = owner.get(p) if isinstance(p, Operation) else None
        inside = set(g.members) if g is not None else set()
        if g is not None and g.kind == "pointwise" \
                and all(same_shape(m.results[0].type, op.in_type(0)) for m in g.members) \
                and all(u.operation in inside or (r is op.operands[0] and u.operation is op)
                        for m in g.members for r in m.results for u in r.uses) \
                and len(list(op.operands[0].uses)) == 1:
            g.members.append(op)
        else:
            g = Group("pointwise", [op])
            groups.append(g)
        owner[op] = g
    return groups


def _label(group: Group) -> str:
    return "+".join(m.name.removeprefix("blade.") for m in group.members)


def _as_gather_rows(block: Block, op: Operation) -> Operation:
    """``op`` (a fusible row gather) replaced by ``blade.gather_rows`` reading its index tensors
    as columns (each viewed with a trailing size-1 dim, a reshape placed just before it)."""
    table, idx, wrap = gather_operands(op)
    cols = []
    for v in idx:
        view = ReshapeOp.create(operands=[v], result_types=[v.type.with_shape(list(v.type.shape) + [1])])
        block.insert_op_before(view, op)
        cols.append(view.results[0])
    new = GatherRowsOp.create(operands=[table, *cols], result_types=[op.results[0].type],
                              properties={"wrap": IntegerAttr(int(wrap), i64)})
    block.insert_op_before(new, op)
    op.results[0].replace_all_uses_with(new.results[0])
    op.detach()
    op.erase()
    return new


def _materialize(block: Block, group: Group, group_id: int) -> None:
    group.members = [_as_gather_rows(block, m) if is_fusible_gather(m) else m for m in group.members]
    members = group.members
    inside = set(members)
    last = members[-1]
    inputs: list[SSAValue] = []
    tables: list[SSAValue] = []  # gathers' tables: inputs of their own (read at rows, not as tiles)
    constants: list[Operation] = []
    for m in members:
        for k, v in enumerate(m.operands):
            p = v.owner
            if isinstance(m, GatherRowsOp) and k == 0:
                if p in inside:  # plan_groups keeps a gather's table outside its group (_reads_inside)
                    raise AssertionError(f"fuse-stitch: group {group_id} computes the table its gather reads")
                if v not in tables:
                    tables.append(v)
                continue
            if p in inside or v in inputs:
                continue
            if isinstance(p, ConstantOp) and p.out_type.rank == 0:
                if p not in constants:
                    constants.append(p)
                continue
            inputs.append(v)
    outputs = [r for m in members for r in m.results if any(u.operation not in inside for u in r.uses)]
    anchor = last.next_op  # the group goes where its last member was
    body = Block(arg_types=[v.type for v in inputs + tables])
    remap: dict[SSAValue, SSAValue] = dict(zip(inputs, body.args))
    table_args = dict(zip(tables, body.args[len(inputs):]))
    for c in constants:
        clone = c.clone()
        body.add_op(clone)
        remap[c.results[0]] = clone.results[0]
    for m in members:
        m.detach()
        body.add_op(m)
        m.operands = [table_args[v] if isinstance(m, GatherRowsOp) and k == 0 else remap.get(v, v)
                      for k, v in enumerate(m.operands)]
    inputs = inputs + tables
    body.add_op(YieldOp.create(operands=outputs))
    sources = sorted({v.owner.name for v in inputs if isinstance(v.owner, EPILOGUE_SOURCES)})
    attrs = {"blade.epilogue_of": ArrayAttr([StringAttr(s) for s in sources])} if sources else {}
    fused = FusedOp.create(
        operands=inputs, result_types=[v.type for v in outputs], regions=[Region(body)], attributes=attrs,
        properties={"kind": StringAttr(group.kind), "id": IntegerAttr(group_id, i64),
                    "ops": StringAttr(_label(group))})
    if anchor is None:
        block.add_op(fused)
    else:
        block.insert_op_before(fused, anchor)
    for v, r in zip(outputs, fused.results):
        v.replace_uses_with_if(r, lambda use: use.operation.parent_op() is not fused)
    for c in constants:
        if not c.results[0].uses:
            c.detach()
            c.erase()
