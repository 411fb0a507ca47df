"""The op catalog of the random-network generator: each ``op_*`` function applies one PyTorch op
(or a short idiom: attention, a strided conv + upsample + residual) to a value when it is valid at
every probe, appends the step and returns the new value, or returns None where it does not apply.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tests.generated.network import NPROBES, Dim, Input, Val

if TYPE_CHECKING:
    from tests.generated.netgen import _Gen

def _idx(rank: int, d: int, s: str) -> str:
    return "[" + ", ".join([":"] * d + [s]) + "]"


def _bcast(a: Val, b: Val) -> tuple | None:
    """The broadcast dims of a and b, or None (sizes must agree at every probe, or be a static 1)."""
    n = max(a.rank, b.rank)
    one = Dim.const(1, len(a.dims[0].vals) if a.dims else NPROBES)
    da = (one,) * (n - a.rank) + a.dims
    db = (one,) * (n - b.rank) + b.dims
    out = []
    for x, y in zip(da, db):
        if x == y:
            out.append(x)
        elif x.static and x.c() == 1:
            out.append(y)
        elif y.static and y.c() == 1:
            out.append(x)
        else:
            return None
    return tuple(out)


# ------------------------------------------------------------------ float elementwise
# (template, keeps exactness, safe in float16/bfloat16)
_UNARY = [
    ("torch.relu({a})", True, True), ("F.silu({a})", False, True), ("F.gelu({a})", False, True),
    ("F.gelu({a}, approximate='tanh')", False, True), ("torch.tanh({a})", False, True),
    ("torch.sigmoid({a})", False, True), ("-{a}", True, True), ("{a}.abs()", True, True),
    ("torch.sin({a})", False, True), ("torch.cos({a})", False, False), ("torch.exp(-{a}.abs())", False, False),
    ("torch.log1p({a}.abs())", False, False), ("torch.sqrt({a}.abs() + 0.5)", False, False),
    ("torch.rsqrt({a} * {a} + 1.0)", False, False), ("torch.erf({a})", False, False),
    ("{a}.clamp(-0.5, 0.75)", True, True), ("{a}.clamp(min=0.1)", True, True),
    ("{a} * 1.5 + 0.25", False, False),
    ("0.5 - {a}", False, True), ("{a} / 3.0", False, False), ("{a} ** 2", False, False),
    ("1.0 / ({a}.abs() + 1.0)", False, False), ("2.0 * {a}", True, True), ("{a} * 0.5", True, True),
    ("{a} + 1", False, True), ("{a} * {a}.shape[-1]", False, False), ("{a} / {a}.shape[0]", False, False),
]
# ops without a Blade lowering: export decomposes them (a retrace costing ~1 s), so they are rare
_DECOMPOSED_UNARY = [("F.leaky_relu({a}, 0.1)", False, False), ("F.elu({a})", False, False),
                     ("F.hardswish({a})", False, False), ("F.softplus({a})", False, False),
                     ("F.hardtanh({a})", True, False)]
_BINARY = ["{a} + {b}", "{a} - {b}", "{a} * {b}", "torch.maximum({a}, {b})", "torch.minimum({a}, {b})",
           "{a} / ({b}.abs() + 1.0)", "torch.add({a}, {b}, alpha=0.5)"]
_EXACT_BINARY = {"torch.maximum({a}, {b})", "torch.minimum({a}, {b})"}


def op_unary(g: _Gen, a: Val):
    if not a.is_float:
        return None
    table = _DECOMPOSED_UNARY if g.rng.random() < 0.04 else _UNARY
    usable = [u for u in table if u[2] or a.dtype == "float32"]
    t, exact, lowp_ok = g.choice(usable or [u for u in _UNARY if u[2]])  # no decomposed op is low-precision safe
    return g.emit(t.format(a=a.name), a.dims, a.dtype, [a], exact=exact)


def op_binary(g: _Gen, a: Val):
    if not a.is_float:
        return None
    b = g.pick(lambda v: v.dtype == a.dtype and v.name != a.name and _bcast(a, v) is not None)
    t = g.choice(_BINARY)
    if b is None or g.rng.random() < 0.2:
        if a.rank >= 2 and a.dims[1].static:  # a per-channel parameter, broadcast over the rest
            shape = (a.dims[1].c(),) + (1,) * (a.rank - 2)
            m, decls = g.module(f"torch.nn.Parameter(torch.randn{shape}.to(torch.{a.dtype}))")
            return g.emit(t.format(a=a.name, b=f"self.{m}"), a.dims, a.dtype, [a], decls)
        d = g.rng.randrange(a.rank) if a.rank else None
        if d is None:
            return None
        red = f"{a.name}.mean(dim={d}, keepdim=True)"  # a broadcast partner: a reduction of a itself
        return g.emit(t.format(a=a.name, b=red) if g.rng.random() < 0.5 else t.format(a=red, b=a.name),
                      a.dims, a.dtype, [a])
    return g.emit(t.format(a=a.name, b=b.name), _bcast(a, b), a.dtype, [a, b], exact=t in _EXACT_BINARY)


def op_reduce(g: _Gen, a: Val):
    if a.dtype == "bool" or a.rank == 0:
        return None
    fn = g.choice(["sum", "mean", "amax", "amin"] if a.is_float else ["sum", "amax"])
    if fn == "mean" and not a.is_float:
        return None
    if a.rank >= 2 and g.rng.random() < 0.3:
        dims = sorted(g.rng.sample(range(a.rank), 2))
    else:
        dims = [g.rng.randrange(a.rank)]
    keep = g.rng.random() < 0.5
    if a.rank == 1 and not keep:
        return None  # keep tensors of rank >= 1
    dspec = dims[0] - a.rank if len(dims) == 1 and g.rng.random() < 0.5 else tuple(dims) if len(dims) > 1 else dims[0]
    out = [Dim.const(1) if i in dims else d for i, d in enumerate(a.dims) if keep or i not in dims]
    dtype = "int64" if a.dtype == "int64" else a.dtype
    return g.emit(f"{a.name}.{fn}(dim={dspec}, keepdim={keep})", out, dtype, [a], exact=fn in ("amax", "amin"))


def op_softmax(g: _Gen, a: Val):
    if not a.is_float or a.rank == 0:
        return None
    d = g.rng.randrange(a.rank) - (a.rank if g.rng.random() < 0.5 else 0)
    t = g.choice(["torch.softmax({a}, dim={d})", "F.log_softmax({a}, dim={d})", "{a}.softmax({d})"])
    if "log" in t and a.dtype != "float32":
        return None
    return g.emit(t.format(a=a.name, d=d), a.dims, a.dtype, [a])


def op_norm(g: _Gen, a: Val):
    if not a.is_float or a.rank < 2:
        return None
    kind = g.rng.choices(["layer", "group", "batch"], [0.4, 0.4, 0.2])[0]
    dt = f"torch.{a.dtype}"
    if kind == "layer" and a.dims[-1].static:
        c = a.dims[-1].c()
        if g.rng.random() < 0.5:
            return g.emit(f"F.layer_norm({a.name}, ({c},))", a.dims, a.dtype, [a])
        m, decls = g.module(f"torch.nn.LayerNorm({c}, elementwise_affine={g.rng.random() < 0.7}).to({dt})",
                            ("torch.nn.init.normal_({m}.weight) if {m}.weight is not None else None",))
        return g.emit(f"self.{m}({a.name})", a.dims, a.dtype, [a], decls)
    if kind == "group" and a.dims[1].static and a.rank >= 3:
        c = a.dims[1].c()
        groups = g.choice([k for k in range(1, c + 1) if c % k == 0])
        if g.rng.random() < 0.3:
            return g.emit(f"F.group_norm({a.name}, {groups})", a.dims, a.dtype, [a])
        m, decls = g.module(f"torch.nn.GroupNorm({groups}, {c}).to({dt})", ("torch.nn.init.normal_({m}.weight)",))
        return g.emit(f"self.{m}({a.name})", a.dims, a.dtype, [a], decls)
    if kind == "batch" and a.dims[1].static and a.rank in (2, 3, 4):
        c = a.dims[1].c()
        cls = "BatchNorm2d" if a.rank == 4 else "BatchNorm1d"
        m, decls = g.module(f"torch.nn.{cls}({c}).to({dt}).eval()",
                            ("{m}.running_mean.uniform_(-1.0, 1.0)", "{m}.running_var.uniform_(0.5, 2.0)",
                             "torch.nn.init.normal_({m}.weight)"))
        return g.emit(f"self.{m}({a.name})", a.dims, a.dtype, [a], decls)
    return None


# ------------------------------------------------------------------ views and data movement
def op_permute(g: _Gen, a: Val):
    if a.rank < 2:
        return None
    if g.rng.random() < 0.5:
        i, j = g.rng.sample(range(a.rank), 2)
        dims = list(a.dims)
        dims[i], dims[j] = dims[j], dims[i]
        return g.emit(f"{a.name}.transpose({i}, {j - a.rank if g.rng.random() < 0.3 else j})", dims, a.dtype, [a],
                      exact=True)
    perm = list(range(a.rank))
    while perm == sorted(perm):
        g.rng.shuffle(perm)
    tail = ".contiguous()" if g.rng.random() < 0.3 else ""
    return g.emit(f"{a.name}.permute({', '.join(map(str, perm))}){tail}", [a.dims[p] for p in perm], a.dtype, [a],
                  exact=True)


def op_reshape(g: _Gen, a: Val):
    kind = g.choice(["flatten", "unflatten", "unsqueeze", "squeeze", "reshape_batch"])
    if kind == "flatten" and a.rank >= 2:
        i = g.rng.randrange(a.rank - 1)
        x, y = a.dims[i], a.dims[i + 1]
        merged = Dim(tuple(p * q for p, q in zip(x.vals, y.vals)), x.static and y.static)
        return g.emit(f"{a.name}.flatten({i}, {i + 1})", a.dims[:i] + (merged,) + a.dims[i + 2:], a.dtype, [a],
                      exact=True)
    if kind == "unflatten":
        cands = [i for i, d in enumerate(a.dims) if d.static and d.c() >= 4 and d.c() % 2 == 0]
        if not cands:
            return None
        i = g.choice(cands)
        c = a.dims[i].c()
        f = g.choice([k for k in range(2, c) if c % k == 0])
        return g.emit(f"{a.name}.unflatten({i}, ({f}, {c // f}))",
                      a.dims[:i] + (Dim.const(f), Dim.const(c // f)) + a.dims[i + 1:], a.dtype, [a], exact=True)
    if kind == "unsqueeze" and a.rank <= 4:
        i = g.rng.randrange(a.rank + 1)
        return g.emit(f"{a.name}.unsqueeze({i})", a.dims[:i] + (Dim.const(1),) + a.dims[i:], a.dtype, [a], exact=True)
    if kind == "squeeze":
        ones = [i for i, d in enumerate(a.dims) if d.static and d.c() == 1]
        if not ones or a.rank == 1:
            return None
        i = g.choice(ones)
        return g.emit(f"{a.name}.squeeze({i})", a.dims[:i] + a.dims[i + 1:], a.dtype, [a], exact=True)
    if kind == "reshape_batch" and a.rank >= 3:
        rest = a.dims[1:]
        merged = Dim(tuple(math.prod(d.vals[p] for d in rest) for p in range(len(a.dims[0].vals))),
                     all(d.static for d in rest))
        return g.emit(f"{a.name}.reshape({a.name}.shape[0], -1)", (a.dims[0], merged), a.dtype, [a], exact=True)
    return None


_SLICES = [  # (index, size at n, minimum n)
    ("1:", lambda n: n - 1, 2), (":-1", lambda n: n - 1, 2), ("::2", lambda n: (n + 1) // 2, 1),
    ("1::2", lambda n: n // 2, 2), (":1", lambda n: 1, 1), ("-2:", lambda n: 2, 2), ("1:-1", lambda n: n - 2, 3),
    # bounds past the dim at some probes, which Python clamps (x[:, -3:] of a dim of 2 is all of it)
    ("-3:", lambda n: min(3, n), 1), (":5", lambda n: min(5, n), 1),
]


def op_slice(g: _Gen, a: Val):
    if a.rank == 0:
        return None
    d = g.rng.randrange(a.rank)
    dim = a.dims[d]
    s, size, least = g.choice(_SLICES)
    if dim.min() < least:
        return None
    new = Dim.const(size(dim.vals[0])) if (dim.static or s in (":1", "-2:")) else dim.map(size)
    if g.rng.random() < 0.2 and s == ":1":  # select: drops the dim
        return g.emit(f"{a.name}.select({d}, {g.choice([0, -1])})", a.dims[:d] + a.dims[d + 1:], a.dtype, [a],
                      exact=True)
    if g.rng.random() < 0.2 and s in ("1:", "1:-1"):
        return g.emit(f"{a.name}.narrow({d}, 1, {a.name}.shape[{d}] - {1 if s == '1:' else 2})",
                      a.dims[:d] + (new,) + a.dims[d + 1:], a.dtype, [a], exact=True)
    return g.emit(f"{a.name}{_idx(a.rank, d, s)}", a.dims[:d] + (new,) + a.dims[d + 1:], a.dtype, [a], exact=True)


def op_cat(g: _Gen, a: Val):
    if a.rank == 0:
        return None
    d = g.rng.randrange(a.rank)

    def fits(v):
        return v.dtype == a.dtype and v.rank == a.rank and all(x == y for i, (x, y) in enumerate(zip(v.dims, a.dims))
                                                                if i != d)
    b = g.pick(fits)
    stack = g.rng.random() < 0.2
    if stack:
        if b is None or b.dims != a.dims:
            b = a
        return g.emit(f"torch.stack([{a.name}, {b.name}], dim={d})", a.dims[:d] + (Dim.const(2),) + a.dims[d:],
                      a.dtype, [a, b], exact=True)
    if b is None:
        b = a
    bd = b.dims[d]
    other = f"{b.name}" if b is not a else g.choice([a.name, f"{a.name}{_idx(a.rank, d, ':1')}"])
    if other.endswith(":1]"):
        bd = Dim.const(1)
    cat = Dim(tuple(x + y for x, y in zip(a.dims[d].vals, bd.vals)), a.dims[d].static and bd.static)
    parts = [a.name, other] if g.rng.random() < 0.5 else [other, a.name]
    return g.emit(f"torch.cat([{', '.join(parts)}], dim={d})", a.dims[:d] + (cat,) + a.dims[d + 1:], a.dtype,
                  [a] + ([b] if b is not a else []), exact=True)


def op_pad(g: _Gen, a: Val):
    if a.rank < 2 or not a.is_float:
        return None
    n = 1 if a.rank < 3 or g.rng.random() < 0.5 else 2
    pads = [g.rng.randrange(3) for _ in range(2 * n)]
    dims = list(a.dims)
    for k in range(n):
        dims[a.rank - 1 - k] = dims[a.rank - 1 - k].map(lambda v, k=k: v + pads[2 * k] + pads[2 * k + 1])
    return g.emit(f"F.pad({a.name}, {tuple(pads)}, value={g.choice([0.0, -1.0, 0.5])})", dims, a.dtype, [a],
                  exact=True)


def op_expand(g: _Gen, a: Val):
    ones = [i for i, d in enumerate(a.dims) if d.static and d.c() == 1]
    if not ones:
        return None
    i = g.choice(ones)
    k = g.choice([2, 3, 5])
    args = ["-1"] * a.rank
    args[i] = str(k)
    return g.emit(f"{a.name}.expand({', '.join(args)})", a.dims[:i] + (Dim.const(k),) + a.dims[i + 1:], a.dtype, [a],
                  exact=True)


def op_chunk(g: _Gen, a: Val):
    cands = [i for i, d in enumerate(a.dims) if d.static and d.c() % 2 == 0 and d.c() >= 2]
    if not cands:
        return None
    i = g.choice(cands)
    return g.emit(f"{a.name}.chunk(2, dim={i})[{g.choice([0, 1])}]",
                  a.dims[:i] + (Dim.const(a.dims[i].c() // 2),) + a.dims[i + 1:], a.dtype, [a], exact=True)


def op_cast(g: _Gen, a: Val):
    if a.dtype == "float32":
        to = g.choice(["float16", "bfloat16"])
        return g.emit(f"{a.name}.clamp(-8.0, 8.0).to(torch.{to})", a.dims, to, [a], exact=a.exact)
    if a.is_float:
        return g.emit(f"{a.name}.float()", a.dims, "float32", [a], exact=a.exact)
    if a.dtype in ("int64", "bool"):
        return g.emit(f"{a.name}.to(torch.float32)", a.dims, "float32", [a], exact=True)
    return None


# ------------------------------------------------------------------ images (N, C, H, W) and sequences
def _conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def op_conv(g: _Gen, a: Val):
    if not a.is_float or a.rank not in (3, 4) or not a.dims[1].static or any(d.static for d in a.dims[2:]):
        return None
    c = a.dims[1].c()
    co = g.choice([2, 3, 4, 6, 8, 12])
    k, s, dil = g.choice([1, 2, 3, 3]), g.choice([1, 1, 2]), g.choice([1, 1, 1, 2])
    p = g.choice([0, 1]) if k > 1 else 0
    groups = g.choice([x for x in (1, 1, 2, c) if c % x == 0 and co % x == 0])
    if groups == c and c > 1:
        co = c * g.choice([1, 2])
    spatial = [d.map(lambda n: _conv_out(n, k, s, p, dil)) for d in a.dims[2:]]
    if any(d.min() < 1 for d in spatial):
        return None
    pad = f"padding={p}"
    if s == 1 and (dil * (k - 1)) % 2 == 0 and g.rng.random() < 0.2:
        pad = "padding='same'"
        spatial = list(a.dims[2:])
    cls = "Conv2d" if a.rank == 4 else "Conv1d"
    if g.rng.random() < 0.15:  # transposed: upsampling by the stride, output padding below it
        out_pad = g.rng.randrange(max(s, dil))
        p = min(p, dil * (k - 1) // 2)
        spatial = [d.map(lambda n: (n - 1) * s - 2 * p + dil * (k - 1) + out_pad + 1) for d in a.dims[2:]]
        m, decls = g.module(f"torch.nn.ConvTranspose{cls[-2:]}({c}, {co}, {k}, stride={s}, padding={p}, "
                            f"output_padding={out_pad}, groups={groups}, bias={g.rng.random() < 0.8}, "
                            f"dilation={dil}).to(torch.{a.dtype})")
        return g.emit(f"self.{m}({a.name})", (a.dims[0], Dim.const(co), *spatial), a.dtype, [a], decls)
    m, decls = g.module(f"torch.nn.{cls}({c}, {co}, {k}, stride={s}, {pad}, dilation={dil}, groups={groups}, "
                        f"bias={g.rng.random() < 0.8}).to(torch.{a.dtype})")
    return g.emit(f"self.{m}({a.name})", (a.dims[0], Dim.const(co), *spatial), a.dtype, [a], decls)


def op_upsample(g: _Gen, a: Val):
    if not a.is_float or a.rank != 4:
        return None
    t = g.choice(["F.interpolate({a}, scale_factor=2.0, mode='nearest')", "F.interpolate({a}, scale_factor=2)",
                  "F.interpolate({a}, scale_factor=(1, 2), mode='nearest')"])
    dims = list(a.dims)
    if "(1, 2)" not in t:
        dims[2] = dims[2].map(lambda n: 2 * n)
    dims[3] = dims[3].map(lambda n: 2 * n)
    return g.emit(t.format(a=a.name), dims, a.dtype, [a], exact=True)


def _ceil_pool_out(n: int, k: int, s: int, p: int) -> int:
    """PyTorch's pooled size with ``ceil_mode``: the last window must start inside the input or
    its left padding."""
    out = -(-(n + 2 * p - k) // s) + 1
    if (out - 1) * s >= n + p:
        out -= 1
    return out


def op_pool(g: _Gen, a: Val):
    if not a.is_float or a.rank != 4:
        return None
    kind = g.choice(["max2", "avg3", "max3", "adaptive", "adaptive", "ceil"])
    if kind == "adaptive":
        oh, ow = g.choice([(1, 1), (3, 3), (2, 5), (7, 7)])
        fn = g.choice(["adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"])
        return g.emit(f"F.{fn}({a.name}, ({oh}, {ow}))", a.dims[:2] + (Dim.const(oh), Dim.const(ow)), a.dtype, [a],
                      exact=fn.endswith("max_pool2d"))
    if kind == "ceil":  # the last window may run past the input
        k, s, p, t = g.choice([(3, 2, 0, "F.max_pool2d({a}, 3, 2, ceil_mode=True)"),
                               (2, 2, 0, "F.avg_pool2d({a}, 2, 2, ceil_mode=True, count_include_pad=False)"),
                               (3, 2, 1, "F.avg_pool2d({a}, 3, 2, 1, ceil_mode=True)")])
        spatial = [d.map(lambda n: _ceil_pool_out(n, k, s, p)) for d in a.dims[2:]]
        if any(d.min() < 1 for d in spatial):
            return None
        return g.emit(t.format(a=a.name), a.dims[:2] + tuple(spatial), a.dtype, [a], exact=t.startswith("F.max"))
    if kind == "avg3" and g.rng.random() < 0.4:  # windows at the border average their in-bounds part only
        kind = "avg3x"
    k, s, p, t = {"max2": (2, 2, 0, "F.max_pool2d({a}, 2)"), "avg3": (3, 2, 1, "F.avg_pool2d({a}, 3, stride=2, padding=1)"),
                  "avg3x": (3, 1, 1, "F.avg_pool2d({a}, 3, stride=1, padding=1, count_include_pad=False)"),
                  "max3": (3, 1, 1, "F.max_pool2d({a}, 3, stride=1, padding=1)")}[kind]
    spatial = [d.map(lambda n: _conv_out(n, k, s, p, 1)) for d in a.dims[2:]]
    if any(d.min() < 1 for d in spatial):
        return None
    return g.emit(t.format(a=a.name), a.dims[:2] + tuple(spatial), a.dtype, [a], exact=kind.startswith("max"))


def op_down_up_residual(g: _Gen, a: Val):
    """conv stride 2, nearest 2x upsample, add the input: valid only for even sizes (issue 8's row)."""
    if not a.is_float or a.rank != 4 or not a.dims[1].static or any(v % 2 for d in a.dims[2:] for v in d.vals):
        return None
    c = a.dims[1].c()
    m, decls = g.module(f"torch.nn.Conv2d({c}, {c}, 3, stride=2, padding=1).to(torch.{a.dtype})")
    return g.emit(f"F.interpolate(self.{m}({a.name}), scale_factor=2.0, mode='nearest') + {a.name}", a.dims,
                  a.dtype, [a], decls)


def op_image_to_seq(g: _Gen, a: Val):
    if a.rank != 4 or not a.dims[1].static:
        return None
    hw = Dim(tuple(x * y for x, y in zip(a.dims[2].vals, a.dims[3].vals)), a.dims[2].static and a.dims[3].static)
    if g.rng.random() < 0.5:
        return g.emit(f"{a.name}.flatten(2).transpose(1, 2)", (a.dims[0], hw, a.dims[1]), a.dtype, [a], exact=True)
    return g.emit(f"{a.name}.permute(0, 2, 3, 1).reshape({a.name}.shape[0], -1, {a.dims[1].c()})",
                  (a.dims[0], hw, a.dims[1]), a.dtype, [a], exact=True)


def op_seq_to_image(g: _Gen, a: Val):
    """[B, H*W, C] back to [B, C, H, W], sizes read from an image value (the linear-projection path)."""
    if a.rank != 3 or not a.dims[2].static:
        return None
    img = g.pick(lambda v: v.rank == 4 and v.dims[0] == a.dims[0]
                 and tuple(x * y for x, y in zip(v.dims[2].vals, v.dims[3].vals)) == a.dims[1].vals)
    if img is None:
        return None
    c = a.dims[2].c()
    dims = (a.dims[0], a.dims[2], img.dims[2], img.dims[3])
    if g.rng.random() < 0.5:
        return g.emit(f"{a.name}.reshape({img.name}.shape[0], {img.name}.shape[2], {img.name}.shape[3], {c})"
                      ".permute(0, 3, 1, 2)", dims, a.dtype, [a, img], exact=a.exact)
    return g.emit(f"{a.name}.transpose(1, 2).reshape(-1, {c}, {img.name}.shape[2], {img.name}.shape[3])", dims,
                  a.dtype, [a, img], exact=a.exact)


def op_linear(g: _Gen, a: Val):
    if not a.is_float or a.rank < 2 or not a.dims[-1].static:
        return None
    c = a.dims[-1].c()
    co = g.choice([3, 4, 8, 12, 16])
    dt = f"torch.{a.dtype}"
    kind = g.choice(["linear", "linear", "param", "addmm"])
    if kind == "addmm" and a.rank == 2:
        m, decls = g.module(f"torch.nn.Parameter(torch.randn({c}, {co}).to({dt}) / {c ** 0.5:.4f})")
        b, bdecls = g.module(f"torch.nn.Parameter(torch.randn({co}).to({dt}))")
        return g.emit(f"torch.addmm(self.{b}, {a.name}, self.{m})", (a.dims[0], Dim.const(co)), a.dtype, [a],
                      decls + bdecls)
    if kind == "param":
        m, decls = g.module(f"torch.nn.Parameter(torch.randn({c}, {co}).to({dt}) / {c ** 0.5:.4f})")
        return g.emit(f"{a.name} @ self.{m}", a.dims[:-1] + (Dim.const(co),), a.dtype, [a], decls)
    m, decls = g.module(f"torch.nn.Linear({c}, {co}, bias={g.rng.random() < 0.8}).to({dt})")
    return g.emit(f"self.{m}({a.name})", a.dims[:-1] + (Dim.const(co),), a.dtype, [a], decls)


def op_attention(g: _Gen, a: Val):
    if not a.is_float or a.rank != 3 or not a.dims[2].static:
        return None
    c = a.dims[2].c()
    heads = g.choice([h for h in (1, 2, 4) if c % h == 0])
    kv = g.pick(lambda v: v.dtype == a.dtype and v.rank == 3 and v.dims[0] == a.dims[0] and v.dims[2].static) \
        if g.rng.random() < 0.4 else a
    kv = kv or a
    ckv = kv.dims[2].c()
    dt = f"torch.{a.dtype}"
    names = [g.fresh("m") for _ in range(3)]
    decls = [f"self.{names[0]} = torch.nn.Linear({c}, {c}).to({dt})"] + \
            [f"self.{n} = torch.nn.Linear({ckv}, {c}).to({dt})" for n in names[1:]]
    split = f".unflatten(-1, ({heads}, {c // heads})).transpose(1, 2)"
    q, k, v = (g.fresh("t") for _ in range(3))
    pre = [f"{q} = self.{names[0]}({a.name}){split}", f"{k} = self.{names[1]}({kv.name}){split}",
           f"{v} = self.{names[2]}({kv.name}){split}"]
    causal = kv is a and g.rng.random() < 0.3
    if g.rng.random() < 0.6:
        att = f"F.scaled_dot_product_attention({q}, {k}, {v}{', is_causal=True' if causal else ''})"
    else:
        att = f"torch.softmax({q} @ {k}.transpose(-1, -2) * {(c // heads) ** -0.5:.6f}, dim=-1) @ {v}"
    return g.emit(f"({att}).transpose(1, 2).flatten(2)", a.dims, a.dtype, [a] + ([kv] if kv is not a else []),
                  decls, pre)


def op_bmm(g: _Gen, a: Val):
    if not a.is_float or a.rank != 3:
        return None
    b = g.pick(lambda v: v.dtype == a.dtype and v.rank == 3 and v.dims[0] == a.dims[0] and v.dims[2] == a.dims[2])
    b = b or a
    t = g.choice(["torch.bmm({a}, {b}.transpose(1, 2))", "{a} @ {b}.transpose(-1, -2)",
                  "torch.matmul({a}, {b}.permute(0, 2, 1))"])
    out = g.emit(t.format(a=a.name, b=b.name), (a.dims[0], a.dims[1], b.dims[1]), a.dtype, [a, b] if b is not a else [a])
    return out


def op_sym_scalar(g: _Gen, a: Val):
    """Position-like sources built from a size: arange, a causal mask from comparisons."""
    if a.rank < 2 or a.dims[-1].static:
        return None
    n = f"{a.name}.shape[-1]"
    if a.is_float and g.rng.random() < 0.5:
        return g.emit(f"{a.name} + torch.arange({n}, dtype=torch.{a.dtype}) * 0.25", a.dims, a.dtype, [a])
    if g.rng.random() < 0.5 and a.rank >= 2 and a.dims[-2] == a.dims[-1]:
        mask = f"torch.arange({n})[None, :] > torch.arange({n})[:, None]"
        if a.is_float:
            return g.emit(f"{a.name}.masked_fill({mask}, -1.0)", a.dims, a.dtype, [a])
    return g.emit(f"torch.arange({n})", (a.dims[-1],), "int64", [a], exact=True)


# ------------------------------------------------------------------ integers, booleans, masks
def op_compare(g: _Gen, a: Val):
    if not a.exact or a.dtype == "bool":
        return None
    if a.dtype == "int64":
        t = g.choice(["{a} > 3", "{a} == 2", "{a} <= 5", "{a} != 0"])
    else:
        t = g.choice(["{a} > 0", "{a} < 0.25", "{a} >= -0.5"])
    b = g.pick(lambda v: v.exact and v.dtype == a.dtype and v.name != a.name and _bcast(a, v) is not None)
    if b is not None and g.rng.random() < 0.4:
        return g.emit(f"{a.name} > {b.name}", _bcast(a, b), "bool", [a, b], exact=True)
    return g.emit(t.format(a=a.name), a.dims, "bool", [a], exact=True)


def op_mask_use(g: _Gen, m: Val):
    """where / masked_fill with a boolean mask, broadcast against a float value."""
    if m.dtype != "bool":
        return None
    for extra in range(0, 3):
        mm = Val(m.name + "[..., None]" * extra, m.dims + (Dim.const(1),) * extra, "bool", True)
        a = g.pick(lambda v, mm=mm: v.is_float and _bcast(mm, v) == v.dims)
        if a is not None:
            break
    else:
        return None
    # the last three put an infinite constant into a kernel and bring the result back to finite values
    t = g.choice(["torch.where({m}, {a}, 0.0)", "{a}.masked_fill({m}, -1.0)", "torch.where({m}, {a}, -{a})",
                  "torch.where({m}, 1.0, {a})", "{a}.masked_fill({m}, float('-inf')).clamp(min=-3.0)",
                  "torch.maximum(torch.where({m}, float('-inf'), {a}), {a} * 0.5)",
                  "torch.where({m}, float('inf'), {a}).clamp(max=2.0)"])
    return g.emit(t.format(m=mm.name, a=a.name), a.dims, a.dtype, [m, a], exact=a.exact)


def op_bool(g: _Gen, m: Val):
    if m.dtype != "bool":
        return None
    other = g.pick(lambda v: v.dtype == "bool" and v.name != m.name and _bcast(m, v) is not None)
    if other is not None and g.rng.random() < 0.6:
        t = g.choice(["{a} & {b}", "{a} | {b}", "torch.logical_and({a}, {b})", "torch.logical_or({a}, {b})"])
        return g.emit(t.format(a=m.name, b=other.name), _bcast(m, other), "bool", [m, other], exact=True)
    t, dt = g.choice([("~{a}", "bool"), ("torch.logical_not({a})", "bool"), ("{a}.long()", "int64"),
                      ("{a}.sum(dim=-1)", "int64")])
    dims = m.dims[:-1] if "sum" in t else m.dims
    if "sum" in t and m.rank < 2:
        return None
    return g.emit(t.format(a=m.name), dims, dt, [m], exact=True)


def op_int(g: _Gen, a: Val):
    if a.dtype != "int64":
        return None
    t = g.choice(["{a} % 3", "{a} * 2 + 1", "{a} // 2", "{a} - 4", "torch.remainder({a} + 7, 5)"])
    return g.emit(t.format(a=a.name), a.dims, "int64", [a], exact=True)


def op_embedding(g: _Gen, a: Val):
    if a.dtype != "int64" or a.name[0] != "i":  # only the raw ids input: indices stay in range
        return None
    c = g.choice([4, 8, 12])
    m, decls = g.module(f"torch.nn.Embedding({VOCAB}, {c})")
    return g.emit(f"self.{m}({a.name})", a.dims + (Dim.const(c),), "float32", [a], decls)


def op_argmax(g: _Gen, a: Val):
    if not a.exact or not a.is_float or a.rank == 0:
        return None
    d = g.rng.randrange(a.rank)
    return g.emit(f"{a.name}.argmax(dim={d})", a.dims[:d] + a.dims[d + 1:], "int64", [a], exact=True)


def op_round(g: _Gen, a: Val):
    """Rounding, sign and NaN/inf tests: discontinuous, so only of exact values (scaled by powers of
    two, which stay exact), where every correct implementation agrees."""
    if not a.exact or not a.is_float:
        return None
    t = g.choice(["torch.floor({a} * 2.0)", "torch.ceil({a} * 0.5)", "torch.round({a} * 4.0)", "torch.trunc({a})",
                  "torch.sign({a})", "torch.round({a})"])
    if g.rng.random() < 0.2:
        t = g.choice(["torch.isnan({a})", "torch.isinf({a} * 2.0)"])
        return g.emit(t.format(a=a.name), a.dims, "bool", [a], exact=True)
    return g.emit(t.format(a=a.name), a.dims, a.dtype, [a], exact=True)


def op_variance(g: _Gen, a: Val):
    if a.dtype != "float32" or a.rank == 0:
        return None
    d = g.rng.randrange(a.rank)
    keep = g.rng.random() < 0.5 or a.rank == 1
    # Bessel's correction only where the reduced dim is 2 or more at every probe (else NaN both ways)
    corr = 1 if a.dims[d].min() >= 2 and g.rng.random() < 0.6 else 0
    fn = g.choice(["var", "std"])
    out = [Dim.const(1) if i == d else x for i, x in enumerate(a.dims) if keep or i != d]
    return g.emit(f"torch.{fn}({a.name}, dim={d}, correction={corr}, keepdim={keep})", out, a.dtype, [a])


def op_repeat_flip(g: _Gen, a: Val):
    if a.rank == 0 or a.dtype == "bool":
        return None
    if g.rng.random() < 0.5:
        d = g.rng.randrange(a.rank)
        return g.emit(f"{a.name}.flip({d})", a.dims, a.dtype, [a], exact=True)
    reps = [g.choice([1, 1, 2, 3]) for _ in range(a.rank)]
    dims = tuple(x.map(lambda v, r=r: v * r) if r > 1 else x for x, r in zip(a.dims, reps))
    return g.emit(f"{a.name}.repeat({', '.join(map(str, reps))})", dims, a.dtype, [a], exact=True)


def op_pad_mode(g: _Gen, a: Val):
    """reflect / replicate / circular padding of the last one (rank 3) or two (rank 4) dims; reflect
    needs each pad below the size, circular at most the size, at every probe."""
    if not a.is_float or a.rank not in (3, 4):
        return None
    n = a.rank - 2
    mode = g.choice(["reflect", "replicate", "circular"])
    pads = [g.rng.randrange(3) for _ in range(2 * n)]
    dims = list(a.dims)
    for k in range(n):
        d = dims[a.rank - 1 - k]
        most = max(pads[2 * k], pads[2 * k + 1])
        if (mode == "reflect" and d.min() <= most) or (mode == "circular" and d.min() < most):
            return None
        dims[a.rank - 1 - k] = d.map(lambda v, k=k: v + pads[2 * k] + pads[2 * k + 1])
    return g.emit(f"F.pad({a.name}, {tuple(pads)}, mode='{mode}')", dims, a.dtype, [a], exact=True)


VOCAB = 10
def op_inplace_write(g: _Gen, a: Val):
    """In-place writes into a copy: ``w[:, 0] = v``, ``w[..., 1:-1] = a[..., 1:-1] * 2``,
    ``w.fill_(c)``, ``w.copy_(b)`` (broadcast, cast). Capture functionalises them into select and
    slice scatters, ``fill`` and ``copy``, which compile as selects (``frontend/aten_scatter.py``)."""
    if a.rank == 0 or a.dtype == "bool":
        return None
    d = g.rng.randrange(a.rank)
    w = g.fresh("w")
    lit = "0.5" if a.is_float else "3"
    kind = g.choice(["select", "slice", "slice", "fill", "copy"])
    uses = [a]
    if kind == "select":
        i = g.choice(["0", "-1"])
        rhs = g.choice([lit, f"{a.name}.select({d}, {i}) * 2"])
        pre = [f"{w} = {a.name}.clone()", f"{w}{_idx(a.rank, d, i)} = {rhs}"]
    elif kind == "slice":
        s, least = g.choice([("1:", 2), ("::2", 1), ("1:-1", 3), (":2", 2), ("1::2", 2)])
        if a.dims[d].min() < least:
            return None
        rhs = g.choice([lit, f"{a.name}{_idx(a.rank, d, s)} * 2"])
        pre = [f"{w} = {a.name}.clone()", f"{w}{_idx(a.rank, d, s)} = {rhs}"]
    elif kind == "fill":
        pre = [f"{w} = {a.name}.clone()", f"{w}.fill_({lit})", f"{w}.add_({a.name})"]
    else:
        b = g.pick(lambda v: v.name != a.name and v.dtype != "bool" and _bcast(v, a) == a.dims)
        if b is None:
            return None
        uses.append(b)
        pre = [f"{w} = torch.empty_like({a.name})", f"{w}.copy_({b.name})"]
    return g.emit(w, a.dims, a.dtype, uses, pre=pre, exact=all(u.exact for u in uses))


_OPS = [  # (op, weight)
    (op_unary, 8), (op_binary, 8), (op_reduce, 3), (op_softmax, 2), (op_norm, 3), (op_permute, 3),
    (op_reshape, 3), (op_slice, 4), (op_cat, 3), (op_pad, 1), (op_expand, 1), (op_chunk, 1), (op_cast, 1.5),
    (op_conv, 6), (op_upsample, 2), (op_pool, 2.5), (op_down_up_residual, 2), (op_image_to_seq, 1.5),
    (op_seq_to_image, 3), (op_linear, 4), (op_attention, 2), (op_bmm, 1.5), (op_sym_scalar, 1),
    (op_compare, 1.5), (op_mask_use, 3), (op_bool, 1.5), (op_int, 1.5), (op_embedding, 3), (op_argmax, 0.7),
    (op_round, 0.8), (op_variance, 0.8), (op_repeat_flip, 1), (op_pad_mode, 0.8), (op_inplace_write, 2.5),
]

_NON_FLOAT_OPS = {
    "bool": [(op_mask_use, 5), (op_bool, 2), (op_cast, 1), (op_permute, 0.5), (op_slice, 0.5)],
    "int64": [(op_embedding, 4), (op_compare, 2), (op_int, 1.5), (op_cast, 1), (op_reduce, 0.5), (op_slice, 0.5),
              (op_permute, 0.5), (op_inplace_write, 0.4)],
}


# ------------------------------------------------------------------ Python int arguments
def add_int_argument(g: _Gen, rng) -> None:
    """A Python int argument ``k`` (1-9, another value at every probe: the variant compiled at the
    first probe compiles once more with ``k`` as a symbol, which serves the others) read by one or
    two steps appended to the network: a scale, a slice bound, an ``arange`` length. Drawn from
    ``rng``, not the network's own generator, so the rest of every seed's network is unchanged."""
    floats = [v for v in g.vals.values() if v.is_float and v.rank >= 1]
    if not floats:
        return
    ks = [rng.randint(1, 9) for _ in g.probes]
    for p, v in zip(g.probes, ks):
        p["K"] = v
    g.inputs.append(Input("k", ("K",), "pyint"))
    k = Val("k", (), "pyint", exact=True)
    for _ in range(rng.randint(1, 2)):
        a = rng.choice(floats[-4:])
        form = rng.choice(["scale", "slice", "slice", "arange"])
        if form == "scale":
            g.emit(f"{a.name} * k", a.dims, a.dtype, [a, k])
        elif form == "slice":
            d = rng.randrange(a.rank)
            cut = Dim(tuple(min(kv, n) for kv, n in zip(ks, a.dims[d].vals)), False)
            g.emit(f"{a.name}{_idx(a.rank, d, ':k')}", a.dims[:d] + (cut,) + a.dims[d + 1:], a.dtype, [a, k],
                   exact=True)
        else:
            g.emit(f"{a.name} + torch.arange(k, dtype=torch.float32).sum() * 0.25", a.dims, a.dtype, [a, k])



def add_float_argument(g: _Gen, rng) -> None:
    """A Python float argument ``s`` (a value in [-2, 2], another at every probe: the variant
    compiled at the first probe compiles once more with ``s`` as a 0-dim value input, which serves
    the others) read by one or two steps appended to the network: a scale, a shift, a
    ``torch.where`` fill. Drawn from ``rng``, as ``add_int_argument``."""
    floats = [v for v in g.vals.values() if v.is_float and v.rank >= 1]
    if not floats:
        return
    for p in g.probes:
        p["S"] = round(rng.uniform(-2, 2), 3)
    g.inputs.append(Input("s", ("S",), "pyfloat"))
    s = Val("s", (), "pyfloat")
    for _ in range(rng.randint(1, 2)):
        a = rng.choice(floats[-4:])
        form = rng.choice(["scale", "shift", "where"])
        expr = {"scale": f"{a.name} * s", "shift": f"{a.name} - s * 0.5",
                "where": f"torch.where({a.name} > 0, {a.name}, s)"}[form]
        g.emit(expr, a.dims, a.dtype, [a, s])


# ------------------------------------------------------------------ in-place writes to an input
def add_input_write(g: _Gen, rng) -> None:
    """A last step that writes into a float input in place, as user code does (``x.add_(...)``,
    ``x.mul_(...)``, ``x.clamp_(...)``, ``x[:, 0] = ...``): the caller's tensor holds the new values
    after the call, and the checker compares every input after the call with eager's (Blade copies
    the program's extra results back: ``BladeModule._write_back``). Appended after every other step,
    so no step reads the input after the write (the generator's values stay what it tracked). Drawn
    from ``rng``, as ``add_int_argument``, so the rest of every seed's network is unchanged."""
    inputs = [g.vals[i.name] for i in g.inputs if i.dtype == "float32" and i.name in g.vals]
    if not inputs:
        return
    x = rng.choice(inputs)
    form = rng.choice(["add", "add", "scale", "clamp", "fill"])
    if form == "add":
        addends = [v for v in g.vals.values() if v.is_float and v.name != x.name and v.rank <= x.rank
                   and _bcast(x, v) == x.dims]
        if not addends:
            form = "scale"
        else:
            v = rng.choice(addends[-4:])
            # a clone: the addend may be a view of the input itself (overlapping in-place reads)
            g.emit(f"{x.name} * 1.0", x.dims, "float32", [x, v], pre=[f"{x.name}.add_({v.name}.clone())"])
            return
    if form == "scale":
        g.emit(f"{x.name} * 1.0", x.dims, "float32", [x], pre=[f"{x.name}.mul_(0.5)"], exact=True)
    elif form == "clamp":
        g.emit(f"{x.name} * 1.0", x.dims, "float32", [x], pre=[f"{x.name}.clamp_(-0.5, 0.5)"], exact=True)
    else:  # a slice of the input written (index 0 of dim 1: every family's dim 1 is at least 1)
        g.emit(f"{x.name} * 1.0", x.dims, "float32", [x], pre=[f"{x.name}[:, 0] = 0.25"], exact=True)


# ------------------------------------------------------------------ row gathers of computed values
def add_row_pick(g: _Gen, rng) -> None:
    """A step that picks rows of a computed float value with computed indices: ``a[idx]`` of a
    rank-2 value (a permutation-like ``(arange * 7 + 3) % n``, or ``-1 - arange``: negative indices
    count from the end), or ``a[arange(b), (arange(b) * 3) % n]`` of a rank-3 value (a text
    encoder's pooled row). Generated kernels read such rows from memory (``blade.gather_rows``).
    Only exact values are picked (inputs, views, ``2.0 * a``...): a pick is a copy, compared bit
    for bit, and a few picked rows of a rounded value would make the autocast bar (twice eager's
    error over those few elements) a coin toss. Drawn from ``rng``, as ``add_int_argument``, so
    the rest of every seed's network is unchanged."""
    cands = [v for v in g.vals.values() if v.is_float and v.exact and v.rank in (2, 3)]
    if not cands:
        return
    a = rng.choice(cands[-4:])
    n0 = f"{a.name}.shape[0]"
    if a.rank == 2:
        idx = rng.choice([f"(torch.arange({n0}) * 7 + 3) % {n0}", f"-1 - torch.arange({n0})"])
        g.emit(f"{a.name}[{idx}] * 2.0", a.dims, a.dtype, [a], exact=True)
    else:
        n1 = f"{a.name}.shape[1]"
        g.emit(f"{a.name}[torch.arange({n0}), (torch.arange({n0}) * 3) % {n1}]", (a.dims[0], a.dims[2]), a.dtype,
               [a], exact=True)
