"""``cluster-supported``: group the ops Blade compiles into ``blade.cluster`` regions; ops that run
in eager PyTorch (``blade.torch_op``) stay between them.

Policy. Each op gets a *level*: a fallback op is one more than the highest level among its
operands' producers, a supported op takes the highest level among its producers. All supported
ops of one level form one cluster. A cluster of level L only reads values of levels <= L and a
fallback of level L only reads values of levels < L, so the order
``cluster 0, fallbacks of level 1, cluster 1, fallbacks of level 2, ...`` is always valid and
never puts a fallback in the middle of a cycle. A program with no fallback becomes one cluster.

    %y = blade.exp %x ...; %z = blade.torch_op %y {...}; %w = blade.add %z, %y ...
    // after:
    %y = blade.cluster %x ({ ... blade.exp ... blade.yield }) {id = 0 : i64}
    %z = blade.torch_op %y {...}
    %w = blade.cluster %z, %y ({ ... blade.add ... blade.yield }) {id = 1 : i64}
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import IntegerAttr, i64
from xdsl.ir import Block, Operation, Region, SSAValue

from blade.dialects.program import ClusterOp, TorchOp, YieldOp
from blade.ir import ModuleOp, ModulePass, entry_function


@dataclass(frozen=True)
class ClusterSupported(ModulePass):
    name = "cluster-supported"

    def apply(self, ctx, op: ModuleOp) -> None:
        fn = entry_function(op)
        block = fn.body.block
        body = [o for o in block.ops if not isinstance(o, func.ReturnOp)]
        if any(isinstance(o, ClusterOp) for o in body):
            return  # already clustered
        level: dict[Operation, int] = {}
        for o in body:
            if _is_source(o):
                continue
            producers = [v.owner for v in o.operands if isinstance(v.owner, Operation) and v.owner in level]
            base = max((level[p] for p in producers), default=0)
            level[o] = base + 1 if isinstance(o, TorchOp) else base
        # Sources (weights, constants) have no inputs: each cluster that reads one gets its own copy,
        # so clusters do not pass weights to each other.
        for o in body:
            if _is_source(o):
                body_levels = sorted({_needed_level(u.operation, level) for u in o.results[0].uses})
                level[o] = body_levels[0] if body_levels else 0
                for lv in body_levels[1:]:
                    clone = o.clone()
                    block.insert_op_after(clone, o)
                    level[clone] = lv
                    o.results[0].replace_uses_with_if(
                        clone.results[0], lambda use, lv=lv: _needed_level(use.operation, level) == lv)
                    body.insert(body.index(o) + 1, clone)
        top = max(level.values(), default=0)
        ret = block.last_op
        for lv in range(top + 1):
            members = [o for o in body if level[o] == lv and not isinstance(o, TorchOp)]
            if members:
                _make_cluster(block, members, lv, before=_first_fallback_above(body, level, lv) or ret)
        # fallbacks of each level go right before the first cluster of their level or above
        for o in body:
            if isinstance(o, TorchOp):
                o.detach()
                nxt = _cluster_of_level(block, level[o]) or ret
                block.insert_op_before(o, nxt)


def _needed_level(user: Operation, level: dict[Operation, int]) -> int:
    """The cluster level a value must be produced in to reach ``user`` (fallbacks of level L run
    before cluster L, so they read from level L - 1)."""
    if isinstance(user, TorchOp):
        return level[user] - 1
    return level.get(user, 0)


def _is_source(op: Operation) -> bool:
    """An op with no operands and one result that is not a fallback (weight, constant, iota...)."""
    return not op.operands and len(op.results) == 1 and not isinstance(op, TorchOp)


def _first_fallback_above(body, level, lv):
    for o in body:
        if isinstance(o, TorchOp) and level[o] > lv:
            return o
    return None


def _cluster_of_level(block: Block, lv: int) -> ClusterOp | None:
    """The first cluster of level >= ``lv`` (fallbacks of level ``lv`` must precede it)."""
    for o in block.ops:
        if isinstance(o, ClusterOp) and o.p("id") >= lv:
            return o
    return None


def _make_cluster(block: Block, members: list[Operation], cluster_id: int, before: Operation) -> None:
    inside = set(members)
    inputs: list[SSAValue] = []
    for o in members:
        for v in o.operands:
            if v.owner not in inside and v not in inputs:
                inputs.append(v)
    outputs = [r for o in members for r in o.results if any(u.operation not in inside for u in r.uses)]
    body = Block(arg_types=[v.type for v in inputs])
    arg_of = dict(zip(inputs, body.args))
    for o in members:
        o.detach()
        body.add_op(o)
        o.operands = [arg_of.get(v, v) for v in o.operands]
    body.add_op(YieldOp.create(operands=outputs))
    cluster = ClusterOp.create(operands=inputs, result_types=[v.type for v in outputs], regions=[Region(body)],
                               properties={"id": IntegerAttr(cluster_id, i64)})
    block.insert_op_before(cluster, before)
    for v, r in zip(outputs, cluster.results):
        v.replace_uses_with_if(r, lambda use: use.operation.parent_op() is not cluster
                               and not _nested_in(use.operation, cluster))


def _nested_in(op: Operation, cluster: ClusterOp) -> bool:
    p = op.parent_op()
    while p is not None:
        if p is cluster:
            return True
        p = p.parent_op()
    return False
