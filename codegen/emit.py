"""Triton source for a ``blade.fused`` group, with every size a runtime argument.

Three templates, chosen by the group's ``kind``:

* ``pointwise``: the iteration space is the group's output shape flattened to ``[M, K]`` (``K``
  the last dim, contiguous). A program computes a ``[BLOCK_M, BLOCK_K]`` tile: each input is read
  through its own strides (broadcast dims have none), the group's ops run in registers, every
  output is written once. A group that ends in a nearest upsample iterates over the upsampled
  output and reads its inputs at ``(h // fh, w // fw)``.
* ``row_norm``: LayerNorm or softmax over the last dim with its prologue and epilogue; a program
  holds ``BLOCK_M`` whole rows (``BLOCK_K >= K``).
* ``group_norm``: NHWC GroupNorm, two schedules picked at launch by the size of a group:

  - *one launch* (``*_res``, small groups): one program per (image, group) holds the whole group
    in registers (a ``[BLOCK_M, BLOCK_K]`` tile with ``BLOCK_M >= pixels``): it loads once, computes
    the mean and then the centred variance from registers (exact two-pass), normalises, runs the
    epilogue and writes. A few tile sizes are compiled; the launcher picks the smallest that fits.
  - *two launches* (large groups): ``*_stats`` gives each (image, group block, chunk of pixels)
    program per-channel sums (``UNROLL`` tiles per loop step, so their loads are in flight
    together), reduces them to per-group partials (parallel-axis theorem), and the last program
    of each (image, group block) (an atomic ticket) merges the chunks into mean and 1/std.
    ``*_apply`` is the pointwise template with the normalisation, the affine and the epilogue
    fused. (A looping one-program-per-group kernel and a cooperative-grid kernel were measured
    no faster than this pair: ``docs/performance.md``.)

Row addressing: a kernel iterates over rows ``rm`` (every dim but the last, flattened) and reads
each input at ``row offset + k``. When every input's row dims are one contiguous range (the normal
case: NHWC activations, GEMM outputs and their column slices, per-image vectors), the row offset
is ``((rm // a) % b) * rs`` with only the division/modulo that input needs (*linear* addressing,
int32 index math). Groups that read through a nearest upsample, or inputs broadcast along a
non-contiguous set of dims, use per-dim coordinates (*coords* addressing).

What the plan assumes of each input (``InputSpec``: its rank, which dims vary with the iteration
space and which are broadcast, size 1) is a claim about shapes only. Strides are never assumed:
the IR types say nothing about them (a ``reshape`` or ``permute`` runs as a strided view of
whatever its producer wrote). The launcher therefore checks every input's actual shape against
the plan's claim (rank, every size, broadcast dims included) and proves a collapse into one row
stride from the actual sizes and strides of every dim before it launches; an input whose dims do
not collapse is copied contiguous (``LaunchStats.layout_copies``), and a shape that contradicts the
plan is an error naming the kernel, the input and both shapes (``compiler/executors/launch.py``). One source
can serve groups whose inputs differ in rank or broadcast dims (an ``add`` over ``[B, L, C]`` and
one over ``[B, H, W, C]``): such groups share compiled kernels but never a launcher, since the
launcher addresses inputs by its own group's ``InputSpec``s. Input pointer types are named in the
source (``# reads:``) because the body alone does not show them.

A row gather (``blade.gather_rows``: an embedding, or ``x[rows, cols]`` over every dim but the
last) reads its index columns as ordinary inputs (broadcast along ``K``) and its *table* input
(``InputSpec.form == "table"``) only at the rows they name: ``t{i}_{j}`` is the table's stride
along its dim ``j`` and ``V{i}_{j}`` that dim's size. An index out of ``[0, V)`` (after ``index``'s
wrap of negatives) reads zeros instead of other memory; with ``bounds_check`` it is an assertion.

With ``bounds_check`` (``Config.bounds_check``) every kernel also receives the element span of each
input and output (``n{i}``, ``nout{j}``) and ``tl.device_assert``s that every offset it loads or
stores lies in ``[0, span)``: a wrong launch then stops with the kernel's name instead of reading
or writing other memory. The checks are part of the source, so of every cache key.

One compiled kernel serves every shape: block sizes are the only compile-time constants, and a
few variants are compiled per kernel (tile width by the channel count, and an *aligned* variant
that promises 16-byte aligned pointers and strides so loads vectorise), picked at launch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from xdsl.ir import SSAValue

from blade.codegen.expressions import (POINTER, STORAGE, Unsupported, compute_type, constant_literal, expression,
                                      storage)
from blade.dialects.data_movement import ConstantOp, GatherRowsOp, IotaOp, UpsampleOp
from blade.dialects.kernel import FusedOp
from blade.dialects.structured import GroupNormOp, LayerNormOp, SoftmaxOp
from blade.dialects.types import TensorType
from blade.passes.fuse_stitch import upsample_factors
from blade.symbolic import static_value

TILE_ELEMENTS = 4096
GN_STATS_WIDTH = 128   # channels a GroupNorm statistics program covers (whole groups)
GN_MAX_CHUNKS = 128    # most pixel chunks per (image, group block); the merge holds them all
GN_STATS_TILE = 4096   # elements of one statistics tile ([BLOCK_M, BLOCK_K])
GN_STATS_UNROLL = 4    # statistics tiles loaded per loop step (bytes in flight per program)
#: one-launch GroupNorm: (tile elements, warps) of the compiled register-resident variants; a
#: group of P pixels runs in one program when P fits the tile's BLOCK_M
GN_RESIDENT_TILES = ((4096, 4), (16384, 8), (32768, 16))


@dataclass
class InputSpec:
    """How one kernel input is read, relative to the iteration space ``[D0, ..., D(r-2), K]``."""

    dtype: str
    row_dims: list[int]  # row dims along which the input varies (a runtime stride each)
    last: str            # "contig": varies along K with stride 1; "bcast": constant along K
    row_div: dict[int, int] = field(default_factory=dict)  # dim -> factor: read at coordinate // factor
    #: linear addressing: which part of the row index the input varies along: "none", "full" (every
    #: row dim), "prefix" (leading dims: rm // a), "suffix" (trailing dims: rm % b), "middle" (both)
    form: str = "none"
    #: the input's rank in the IR (right-aligned to the space; missing leading dims broadcast);
    #: a "table" (a row gather's, ``form == "table"``) is not aligned: it is read at the rows its
    #: index columns name, along every dim but its last (which is ``K``)
    rank: int = 0

    def expected_shape(self, space: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the plan assumes this input has in iteration space ``space``: the space's
        size along the dims it varies with (divided by an upsample factor), 1 where it broadcasts."""
        r = len(space)
        out = []
        for j in range(self.rank):
            d = j + (r - self.rank)
            if d == r - 1:
                out.append(space[d] if self.last == "contig" else 1)
            elif d in self.row_dims:
                out.append(space[d] // self.row_div.get(d, 1))
            else:
                out.append(1)
        return tuple(out)


@dataclass
class Variant:
    kernel: str                 # entry point name in the source
    constexprs: dict[str, int]
    aligned: bool
    num_warps: int = 4
    debug: bool = False         # compiled with device assertions kept (the plan's bounds_check)


@dataclass
class KernelPlan:
    """A generated kernel: its source, how to call it, and which variants to compile."""

    name: str
    kind: str
    label: str
    source: str
    rank: int
    inputs: list[InputSpec]
    outputs: list[str]              # storage dtype of each output
    variants: list[Variant] = field(default_factory=list)
    static_k: int | None = None
    num_groups: int = 0
    eps: float = 0.0
    addressing: str = "linear"      # "linear" or "coords" (see the module docstring)
    bounds_check: bool = False      # device_assert every offset (see the module docstring)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]

    def signature(self, kernel: str) -> dict[str, str]:
        """Triton signature (argument name -> type) of entry point ``kernel``."""
        sig: dict[str, str] = {}
        for i, spec in enumerate(self.inputs):
            sig[f"in{i}"] = POINTER[spec.dtype]
        if not kernel.endswith("_stats"):
            for j, dt in enumerate(self.outputs):
                sig[f"out{j}"] = POINTER[dt]
        if kernel.endswith("_stats"):
            sig.update({"partial": "*fp32", "stats": "*fp32", "counter": "*i32"})
        elif kernel.endswith("_apply"):
            sig["stats"] = "*fp32"
        sig.update({"M": "i32", "K": "i64"})
        sig.update(self.address_args())
        if self.bounds_check:  # element spans of every tensor the kernel addresses
            sig.update({f"n{i}": "i64" for i in range(len(self.inputs))})
            if not kernel.endswith("_stats"):
                sig.update({f"nout{j}": "i64" for j in range(len(self.outputs))})
        if self.kind == "group_norm":
            sig["P"] = "i32"
            if kernel.endswith("_stats"):
                sig.update({"nchunks": "i32", "rows_per_chunk": "i32", "eps": "fp32"})
        for c in self.constexpr_names(kernel):
            sig[c] = "constexpr"
        return sig

    def address_args(self) -> dict[str, str]:
        """Runtime arguments that locate each input's rows (see the module docstring)."""
        args: dict[str, str] = {}
        for i, spec in enumerate(self.inputs):
            if spec.form == "table":  # a row gather's table: a stride and a size per indexed dim
                for j in range(spec.rank - 1):
                    args[f"t{i}_{j}"] = "i64"
                    args[f"V{i}_{j}"] = "i64"
        if self.addressing == "coords":
            for d in self.needed_row_dims():
                args[f"D{d}"] = "i32"
            for i, spec in enumerate(self.inputs):
                for d in spec.row_dims:
                    args[f"s{i}_{d}"] = "i64"
            return args
        for i, spec in enumerate(self.inputs):
            if spec.form in ("none", "table"):
                continue
            args[f"rs{i}"] = "i64"
            if spec.form in ("prefix", "middle"):
                args[f"a{i}"] = "i32"
            if spec.form in ("suffix", "middle"):
                args[f"b{i}"] = "i32"
        return args

    def constexpr_names(self, kernel: str) -> list[str]:
        if self.kind == "group_norm":
            if kernel.endswith("_stats"):
                return ["G", "CPG", "GB", "GBP", "CHMAX", "UNROLL", "BLOCK_M", "BLOCK_K"]
            if kernel.endswith("_res"):
                return ["G", "CPG", "BLOCK_M", "BLOCK_K"]
            return ["G", "CPG", "SINGLE_IMAGE", "BLOCK_M", "BLOCK_K"]
        return ["BLOCK_M", "BLOCK_K"]

    def needed_row_dims(self) -> list[int]:
        dims = sorted({d for s in self.inputs for d in s.row_dims})
        return list(range(min(dims), self.rank - 1)) if dims else []


def next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# ---------------------------------------------------------------------------------------------


def anchor_of(op: FusedOp):
    return next((o for o in op.body_ops() if isinstance(o, (GroupNormOp, LayerNormOp, SoftmaxOp))), None)


def iteration_space(op: FusedOp) -> TensorType:
    """The type whose shape every output of the group has (the kernel's ``[..., K]`` space)."""
    anchor = anchor_of(op)
    return anchor.out_type if anchor is not None else op.body_ops()[-1].results[0].type


def _iota(op: IotaOp) -> str:
    """The Triton expression of a fused 1-D ``iota`` over the tile (``[1, BLOCK_K]`` broadcast with
    the rows), in its compute type: the index times ``step`` plus ``start``."""
    ct = compute_type(op.out_type)
    index = "(rm[:, None] * K + rk[None, :])"
    start, step = op.p("start"), op.p("step")
    if ct in ("tl.int32", "tl.int64"):
        return f"({index}.to({ct}) * {int(step)} + {int(start)})"
    return f"({index}.to({ct}) * {float(step)!r} + {float(start)!r})"


def plan_kernel(op: FusedOp, bounds_check: bool = False) -> KernelPlan:
    """The kernel of one fused group; ``bounds_check`` compiles offset assertions into it."""
    kind = op.p("kind")
    anchor = anchor_of(op)
    space = iteration_space(op)
    rank = space.rank
    if rank != 1 and any(isinstance(o, IotaOp) for o in op.body_ops()):
        raise Unsupported(f"an iota in a group over a rank-{rank} space (its value is the index of a 1-D one)")
    ups = next((o for o in op.body_ops() if isinstance(o, UpsampleOp)), None)
    if ups is not None:  # inputs live at the upsample's input resolution: read at (h // fh, w // fw)
        factors = dict(zip((1, 2), upsample_factors(ups)))
        inputs = [_input_spec(a.type, ups.in_type(0)) for a in op.body.block.args]
        for spec in inputs:
            spec.row_div = {d: f for d, f in factors.items() if d in spec.row_dims and f != 1}
    else:
        inputs = [_input_spec(a.type, space) for a in op.body.block.args]
    tables = {o.operands[0] for o in op.body_ops() if isinstance(o, GatherRowsOp)}
    if any(t not in op.body.block.args for t in tables):  # groups merged around a computed table
        raise Unsupported("a gather from a table the group itself computes (rows are read from memory)")
    for i, a in enumerate(op.body.block.args):
        if a in tables:  # read only by gathers, at the rows their columns name
            if any(not (isinstance(u.operation, GatherRowsOp) and u.index == 0) for u in a.uses):
                raise Unsupported("a gather's table that the group also reads as an ordinary operand")
            inputs[i] = InputSpec(storage(a.type), [], "contig", form="table", rank=a.type.rank)
    if tables and kind == "group_norm":
        raise Unsupported("a row gather in a GroupNorm group")
    outputs = [storage(v.type) for v in op.outputs]
    plan = KernelPlan("", kind, op.p("ops"), "", rank, inputs, outputs, bounds_check=bounds_check)
    if ups is not None or any(s.form == "coords" for s in inputs):
        plan.addressing = "coords"
    plan.static_k = static_value(space.shape[-1])
    if isinstance(anchor, GroupNormOp):
        plan.num_groups, plan.eps = anchor.p("num_groups"), anchor.p("eps")
    elif isinstance(anchor, LayerNormOp):
        plan.eps = anchor.p("eps")
    src = _Source(op, plan, anchor).render()
    digest = hashlib.sha256(src.encode()).hexdigest()[:10]
    short = "_".join(dict.fromkeys(n.replace("_", "") for n in plan.label.split("+")))[:40]
    plan.name = f"{kind}_{short}_{digest}"
    plan.source = src.replace("KNAME", plan.name)
    plan.variants = _variants(plan)
    for v in plan.variants:
        v.debug = bounds_check
    return plan


def _input_spec(t: TensorType, space: TensorType) -> InputSpec:
    r, ri = space.rank, t.rank
    row_dims = []
    for d in range(r - 1):
        j = d - (r - ri)
        if j >= 0 and not (t.shape[j] == 1 and space.shape[d] != 1):
            row_dims.append(d)
    j = ri - 1
    last = "contig" if (ri >= 1 and not (t.shape[j] == 1 and space.shape[r - 1] != 1)) else "bcast"
    return InputSpec(storage(t), row_dims, last, form=_row_form(row_dims, r - 1), rank=ri)


def _row_form(row_dims: list[int], nrows: int) -> str:
    """How an input's row offset follows from the flat row index (``coords``: it does not)."""
    if not row_dims:
        return "none"
    lo, hi = row_dims[0], row_dims[-1]
    if row_dims != list(range(lo, hi + 1)):
        return "coords"
    return {(True, True): "full", (True, False): "prefix", (False, True): "suffix"}.get(
        (lo == 0, hi == nrows - 1), "middle")


def _variants(plan: KernelPlan) -> list[Variant]:
    k = plan.static_k
    aligned_options = [False] if (k is not None and k % 16) else [True, False]
    out = []
    if plan.kind == "pointwise":
        widths = [_pointwise_block_k(k)] if k is not None else [32, 256]
        for bk in widths:
            for al in aligned_options:
                out.append(Variant(plan.name, {"BLOCK_M": max(1, TILE_ELEMENTS // bk), "BLOCK_K": bk}, al))
    elif plan.kind == "row_norm":
        bk = next_pow2(k)
        for al in aligned_options:
            out.append(Variant(plan.name, {"BLOCK_M": max(1, TILE_ELEMENTS // bk), "BLOCK_K": bk}, al,
                               num_warps=4 if bk <= 1024 else 8))
    else:  # group_norm
        g = plan.num_groups
        cpg = k // g
        gb = max(d for d in range(1, g + 1) if g % d == 0 and (d == 1 or d * cpg <= GN_STATS_WIDTH))
        bk_stats = next_pow2(gb * cpg)
        stats_consts = {"G": g, "CPG": cpg, "GB": gb, "GBP": next_pow2(gb), "CHMAX": GN_MAX_CHUNKS,
                        "UNROLL": GN_STATS_UNROLL, "BLOCK_M": max(1, GN_STATS_TILE // bk_stats), "BLOCK_K": bk_stats}
        bk = _pointwise_block_k(k)
        bk_res = next_pow2(cpg)
        for al in aligned_options:
            for tile, warps in GN_RESIDENT_TILES:
                out.append(Variant(plan.name + "_res", {"G": g, "CPG": cpg, "BLOCK_M": max(1, tile // bk_res),
                                                        "BLOCK_K": bk_res}, al, num_warps=warps))
            out.append(Variant(plan.name + "_stats", stats_consts, al))
            for single in (1, 0):
                apply_consts = {"G": g, "CPG": cpg, "SINGLE_IMAGE": single,
                                "BLOCK_M": max(1, TILE_ELEMENTS // bk), "BLOCK_K": bk}
                out.append(Variant(plan.name + "_apply", apply_consts, al))
    return out


def _pointwise_block_k(k: int | None) -> int:
    """Tile width along K: the largest power of two <= 256 dividing K (no masked lanes) when K is
    a multiple of 16, else K rounded up to a power of two (capped at 256)."""
    if k is None:
        return 256
    if k % 16 == 0:
        bk = 256
        while k % bk:
            bk //= 2
        return bk
    return min(256, next_pow2(k))


# ---------------------------------------------------------------------------------------------


class _Source:
    """Renders the Triton module text of one plan."""

    def __init__(self, op: FusedOp, plan: KernelPlan, anchor):
        self.op, self.plan, self.anchor = op, plan, anchor
        self.body = op.body_ops()

    def render(self) -> str:
        p = self.plan
        head = [
            f'"""Generated by Blade for a fused group: {p.label} ({p.kind}).',
            "",
            "Every size is a runtime argument; BLOCK_* are the only compile-time constants.",
            '"""',
            "import triton",
            "import triton.language as tl",
            "",
        ]
        if p.kind == "group_norm":
            kernels = [self._kernel("KNAME_res", mode="res"), self._kernel("KNAME_stats", mode="stats"),
                       self._kernel("KNAME_apply")]
            return "\n".join(head + kernels[0] + [""] + kernels[1] + [""] + kernels[2]) + "\n"
        return "\n".join(head + self._kernel("KNAME")) + "\n"

    # ------------------------------------------------------------------ pieces
    def _kernel(self, name: str, mode: str = "") -> list[str]:
        p = self.plan
        sig = p.signature(name.replace("KNAME", "k"))
        args = [f"{a}: tl.constexpr" if t == "constexpr" else a for a, t in sig.items()]
        lines = ["@triton.jit", f"def {name}({', '.join(args)}):", f"    # fused: {p.label}"]
        # the pointer types are not otherwise visible in the body (loads convert to the compute
        # type): naming them here makes groups that read other dtypes other sources, so they never
        # share compiled kernels (an f16 tensor read through an *fp32 pointer runs past its end)
        lines.append("    # reads: " + ", ".join(f"in{i} {s.dtype}" for i, s in enumerate(p.inputs)))
        self.mode = mode
        if mode == "stats":
            lines += self._stats_body()
        elif mode == "res":
            lines += self._resident_prelude()
            lines += self._compute(upto=None)
            lines += self._stores()
        else:
            lines += self._tile_prelude(full_rows=p.kind == "row_norm")
            lines += self._compute(upto=None)
            lines += self._stores()
        return lines

    def _tile_prelude(self, full_rows: bool) -> list[str]:
        out = ["    pid_m = tl.program_id(0)"]
        out.append("    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)")
        if full_rows:
            out.append("    rk = tl.arange(0, BLOCK_K)")
        else:
            out.append("    rk = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)")
        out += ["    mask_m = rm < M", "    mask_k = rk < K", "    mask = mask_m[:, None] & mask_k[None, :]"]
        return out

    def _row_offsets(self) -> list[str]:
        """``o{i}``: the element offset of each input's row, from the flat row index ``rm``."""
        p = self.plan
        if p.addressing == "coords":
            dims = p.needed_row_dims()
            out = []
            if dims:
                out.append("    rem = rm")
                for d in reversed(range(dims[0] + 1, p.rank - 1)):
                    out.append(f"    c{d} = rem % D{d}")
                    out.append(f"    rem = rem // D{d}")
                out.append(f"    c{dims[0]} = rem")
            for i, spec in enumerate(p.inputs):
                if spec.row_dims:
                    terms = [f"(c{d} // {spec.row_div[d]})" if d in spec.row_div else f"c{d}" for d in spec.row_dims]
                    out.append(f"    o{i} = " + " + ".join(f"{t}.to(tl.int64) * s{i}_{d}"
                                                          for t, d in zip(terms, spec.row_dims)))
            return out
        index = {"full": "rm", "prefix": "(rm // a{i})", "suffix": "(rm % b{i})", "middle": "((rm // a{i}) % b{i})"}
        return [f"    o{i} = {index[spec.form].format(i=i)}.to(tl.int64) * rs{i}"
                for i, spec in enumerate(p.inputs) if spec.form not in ("none", "table")]

    def _loads(self) -> list[str]:
        out = self._row_offsets()
        for i, spec in enumerate(self.plan.inputs):
            if spec.form == "table":  # read by its gathers (``_gather``)
                continue
            ct = STORAGE[spec.dtype][1]
            if spec.last == "bcast" and not spec.row_dims:
                offset, mask, load = "0", None, f"tl.load(in{i}).to({ct})"
            elif spec.last == "bcast":
                offset, mask = f"o{i}", "mask_m"
                load = f"tl.load(in{i} + o{i}, mask=mask_m, other=0).to({ct})[:, None]"
            elif not spec.row_dims:
                offset, mask = "rk", "mask_k"
                load = f"tl.load(in{i} + rk, mask=mask_k, other=0).to({ct})[None, :]"
            else:
                offset, mask = f"o{i}[:, None] + rk[None, :]", "mask"
                load = f"tl.load(in{i} + {offset}, mask=mask, other=0).to({ct})"
            out += self._bounds_assert(offset, mask, f"n{i}", f"in{i}")
            out.append(f"    x{i} = {load}")
        return out

    def _bounds_assert(self, offset: str, mask: str | None, span: str, what: str) -> list[str]:
        """With ``bounds_check``: assert that ``offset`` (where ``mask`` holds) lies in ``[0, span)``."""
        if not self.plan.bounds_check:
            return []
        if mask is None:  # a scalar read at offset 0
            cond = f"{span} > 0"
        else:
            cond = f"((({offset}) >= 0) & (({offset}) < {span})) | ({mask} == 0)"
        return [f'    tl.device_assert({cond}, "KNAME: {what} offset outside its tensor ([0, {span}))")']

    def _compute(self, upto) -> list[str]:
        """Load inputs and compute the group's ops (up to the anchor's input if ``upto``)."""
        out = self._loads()
        self.names: dict[SSAValue, str] = {a: f"x{i}" for i, a in enumerate(self.op.body.block.args)}
        self.consts: dict[SSAValue, str] = {}
        for k, o in enumerate(self.body):
            if isinstance(o, ConstantOp):
                self.consts[o.results[0]] = constant_literal(o)
                self.names[o.results[0]] = constant_literal(o)
                continue
            if o is upto:
                return out
            if isinstance(o, IotaOp):  # start + step * i, i the element's index (a 1-D space: rm is 0)
                out.append(f"    v{k} = {_iota(o)}")
                self.names[o.results[0]] = f"v{k}"
                continue
            if isinstance(o, GatherRowsOp):
                out += self._gather(o, f"v{k}")
                self.names[o.results[0]] = f"v{k}"
                continue
            if isinstance(o, UpsampleOp):  # inputs are already read at the upsampled coordinates
                self.names[o.results[0]] = self.names[o.operands[0]]
                continue
            if o is self.anchor:
                out += self._anchor(o, f"v{k}")
            else:
                args = [self.names[v] for v in o.operands]
                consts = {i: (self.consts[v] if self.consts[v] in ("True", "False") else float(v.owner.p("value")))
                          for i, v in enumerate(o.operands) if v in self.consts}
                expr = expression(o, args, [v.type for v in o.operands], consts)
                out.append(f"    v{k} = {expr}")
            self.names[o.results[0]] = f"v{k}"
        return out

    def _gather(self, o: GatherRowsOp, name: str) -> list[str]:
        """``name``: the rows of the table that the gather's index columns name (``[BLOCK_M, 1]``
        values, or scalars), one load per row; an index out of range reads zeros (an assertion
        with ``bounds_check``)."""
        i = list(self.op.body.block.args).index(o.operands[0])
        ct = STORAGE[self.plan.inputs[i].dtype][1]
        out, terms, valid = [], [], []
        for j, col in enumerate(o.operands[1:]):
            g = f"{name}_i{j}"
            out.append(f"    {g} = {self.names[col]}.to(tl.int64)")
            if o.p("wrap"):  # ``index``: a negative index counts from the end
                out.append(f"    {g} = tl.where({g} < 0, {g} + V{i}_{j}, {g})")
            valid.append(f"({g} >= 0) & ({g} < V{i}_{j})")
            terms.append(f"{g} * t{i}_{j}")
        out.append(f"    {name}_ok = " + " & ".join(valid))
        if self.plan.bounds_check:
            out.append(f'    tl.device_assert({name}_ok | (mask == 0), "KNAME: a gather index is outside its table")')
        offset = " + ".join(terms) + " + rk[None, :]"
        mask = f"mask & {name}_ok"
        out += self._bounds_assert(offset, mask, f"n{i}", f"in{i}")
        out.append(f"    {name} = tl.load(in{i} + {offset}, mask={mask}, other=0).to({ct})")
        return out

    def _anchor(self, o, name: str) -> list[str]:
        x = self.names[o.operands[0]]
        if isinstance(o, SoftmaxOp):
            return [f"    xm = tl.where(mask, {x}, float('-inf'))",
                    "    mx = tl.max(xm, axis=1)",
                    "    ex = tl.where(mask, tl.exp(xm - mx[:, None]), 0.0)",
                    f"    {name} = ex / tl.sum(ex, axis=1)[:, None]"]
        if isinstance(o, LayerNormOp):
            out = [f"    xz = tl.where(mask, {x}, 0.0)",
                   "    mean = tl.sum(xz, axis=1) / K",
                   f"    xc = tl.where(mask, {x} - mean[:, None], 0.0)",
                   "    var = tl.sum(xc * xc, axis=1) / K",
                   f"    {name} = xc * tl.rsqrt(var + {self.plan.eps!r})[:, None]"]
        else:  # GroupNorm apply: statistics come from the stats launch
            w, b = (self.names[o.operands[1]], self.names[o.operands[2]]) if len(o.operands) == 3 else ("1.0", "0.0")
            if self.mode == "res":  # the whole group is in registers: exact two-pass statistics
                return [f"    xz = tl.where(mask, {x}, 0.0)",
                        "    count = (P * CPG).to(tl.float32)",
                        "    mean = tl.sum(tl.sum(xz, axis=1), axis=0) / count",
                        f"    xc = tl.where(mask, {x} - mean, 0.0)",
                        f"    rstd = tl.rsqrt(tl.sum(tl.sum(xc * xc, axis=1), axis=0) / count + {self.plan.eps!r})",
                        f"    scale = rstd * {w}",
                        f"    {name} = {x} * scale + ({b} - mean * scale)"]
            return ["    grp = rk // CPG",
                    "    if SINGLE_IMAGE:  # every row of the tile is in one image: per-column scale/shift",
                    "        img0 = (pid_m * BLOCK_M) // P",
                    "        sidx = (img0 * G + grp) * 2",
                    "        mean = tl.load(stats + sidx, mask=mask_k, other=0.0)[None, :]",
                    "        rstd = tl.load(stats + sidx + 1, mask=mask_k, other=0.0)[None, :]",
                    "    else:",
                    "        img = (rm // P).to(tl.int64)",
                    "        sidx = (img[:, None] * G + grp[None, :]) * 2",
                    "        mean = tl.load(stats + sidx, mask=mask, other=0.0)",
                    "        rstd = tl.load(stats + sidx + 1, mask=mask, other=0.0)",
                    f"    scale = rstd * {w}",
                    f"    {name} = {x} * scale + ({b} - mean * scale)"]
        if len(o.operands) == 3:
            w, b = self.names[o.operands[1]], self.names[o.operands[2]]
            out.append(f"    {name} = {name} * {w} + {b}")
        return out

    def _stores(self) -> list[str]:
        out = ["    orow = rm.to(tl.int64) * K"]
        ret = self.op.body.block.last_op
        for j, v in enumerate(ret.operands):
            st = STORAGE[storage(v.type)][0]
            val = self.names[v]
            if val in self.consts.values() or not val.startswith(("v", "x")):
                val = f"tl.full([BLOCK_M, BLOCK_K], {val}, {compute_type(v.type)})"
            out += self._bounds_assert("orow[:, None] + rk[None, :]", "mask", f"nout{j}", f"out{j}")
            out.append(f"    tl.store(out{j} + orow[:, None] + rk[None, :], {val}.to({st}), mask=mask)")
        return out

    def _group_block_prelude(self) -> list[str]:
        """Program -> (image, block of GB whole groups); ``rk`` are the block's channels."""
        return ["    GBLK: tl.constexpr = G // GB",
                "    img = tl.program_id(0) // GBLK",
                "    gblk = tl.program_id(0) % GBLK",
                "    lane = tl.arange(0, BLOCK_K)",
                "    rk = gblk * (GB * CPG) + lane",
                "    mask_k = lane < GB * CPG"]

    def _resident_prelude(self) -> list[str]:
        """Program -> (image, group); the tile holds all ``P`` pixels of the group's channels."""
        return ["    img = tl.program_id(0) // G",
                "    lane = tl.arange(0, BLOCK_K)",
                "    rk = (tl.program_id(0) % G) * CPG + lane",
                "    mask_k = lane < CPG",
                "    rm = img * P + tl.arange(0, BLOCK_M)",
                "    mask_m = rm < (img + 1) * P",
                "    mask = mask_m[:, None] & mask_k[None, :]"]

    def _lane_sums_to_groups(self) -> list[str]:
        """Per-lane sums ``acc1``/``acc2`` over ``n`` pixels -> per-group mean ``gmean`` and M2
        ``gm2`` (per-channel M2 merged exactly with the parallel-axis theorem)."""
        return ["    s1 = tl.sum(acc1, axis=0)",
                "    s2 = tl.sum(acc2, axis=0)",
                "    mean_c = s1 / n",
                "    m2_c = tl.maximum(s2 - s1 * mean_c, 0.0)",
                "    rg = tl.arange(0, GBP)",
                "    onehot = ((lane[None, :] // CPG) == rg[:, None]) & mask_k[None, :]",
                "    gmean = tl.sum(tl.where(onehot, mean_c[None, :], 0.0), axis=1) / CPG",
                "    dev = mean_c[None, :] - gmean[:, None]",
                "    gm2 = tl.sum(tl.where(onehot, m2_c[None, :] + n * dev * dev, 0.0), axis=1)"]

    def _sum_loop(self, row0: str, row_end: str) -> list[str]:
        """Per-lane sum and sum of squares of the anchor's input over rows ``[row0, row_end)``."""
        out = ["    acc1 = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)",
               "    acc2 = tl.zeros([BLOCK_M, BLOCK_K], dtype=tl.float32)",
               "    # UNROLL independent tiles per step: their loads are in flight together",
               f"    for start in range({row0}, {row_end}, BLOCK_M * UNROLL):",
               "        for u in tl.static_range(UNROLL):",
               "            rm = start + u * BLOCK_M + tl.arange(0, BLOCK_M)",
               f"            mask_m = rm < {row_end}",
               "            mask = mask_m[:, None] & mask_k[None, :]"]
        compute = self._compute(upto=self.anchor)
        out += ["        " + line for line in compute]
        x = self.names[self.anchor.operands[0]]
        out += [f"            xs = tl.where(mask, {x}, 0.0)",
                "            acc1 += xs",
                "            acc2 += xs * xs"]
        return out

    def _chunk_sums(self) -> list[str]:
        """Pass 1 of a (image, group block, chunk) program: per-group mean and M2 of its chunk."""
        out = ["    chunk = tl.program_id(1)",
               "    row0 = img * P + chunk * rows_per_chunk",
               "    row_end = tl.minimum(row0 + rows_per_chunk, (img + 1) * P)",
               "    # per-lane sums over the chunk (short fp32 sums); the M2 of chunks and channels is then",
               "    # merged exactly with the parallel-axis theorem"]
        out += self._sum_loop("row0", "row_end")
        out += ["    n = (row_end - row0).to(tl.float32)"]
        out += self._lane_sums_to_groups()
        out += ["    mask_g = rg < GB",
                "    gidx = gblk * GB + rg",
                "    base = ((img * nchunks + chunk) * G + gidx) * 2",
                "    tl.store(partial + base, gmean, mask=mask_g)",
                "    tl.store(partial + base + 1, gm2, mask=mask_g)",
                "    tl.debug_barrier()"]
        return out

    @staticmethod
    def _merge_chunks(indent: str) -> list[str]:
        """Every chunk's partials of this (image, group block) -> per-group ``mean`` and ``rstd``."""
        lines = ["rc = tl.arange(0, CHMAX)",
                 "mask_c = rc < nchunks",
                 "cnt = (tl.minimum(rows_per_chunk, P - rc * rows_per_chunk) * CPG).to(tl.float32)",
                 "cnt = tl.where(mask_c, cnt, 0.0)",
                 "both = mask_c[:, None] & mask_g[None, :]",
                 "pidx = ((img * nchunks + rc[:, None]) * G + gidx[None, :]) * 2",
                 "pm = tl.load(partial + pidx, mask=both, other=0.0, cache_modifier='.cg')",
                 "pm2 = tl.load(partial + pidx + 1, mask=both, other=0.0, cache_modifier='.cg')",
                 "total = tl.sum(cnt, axis=0)",
                 "mean = tl.sum(pm * cnt[:, None], axis=0) / total",
                 "dm = pm - mean[None, :]",
                 "m2 = tl.sum(tl.where(both, pm2 + cnt[:, None] * dm * dm, 0.0), axis=0)",
                 "rstd = tl.rsqrt(m2 / total + eps)"]
        return [indent + line for line in lines]

    def _stats_body(self) -> list[str]:
        out = self._group_block_prelude() + self._chunk_sums()
        out += ["    ticket = tl.atomic_add(counter + img * GBLK + gblk, 1, sem='acq_rel')",
                "    if ticket == nchunks - 1:",
                "        # the last chunk of this (image, group block) merges all chunks into mean, 1/std"]
        out += self._merge_chunks("        ")
        out += ["        tl.store(stats + (img * G + gidx) * 2, mean, mask=mask_g)",
                "        tl.store(stats + (img * G + gidx) * 2 + 1, rstd, mask=mask_g)",
                "        tl.atomic_xchg(counter + img * GBLK + gblk, 0)"]
        return out
