"""A seeded random-network generator: small PyTorch modules composed from the ops Blade lowers.

Hand-written op tests (tests/unit/op_matrix.py) cover each op family; bugs live in the
combinations: a slice of a permute feeding a strided conv at an odd size, a broadcast against a
reduction of a view, a mask from an integer input. This module writes such combinations as Python
source, deterministically per seed, so a failing case is its own reproduction.

A network is generated *for* four size assignments ("probes": the compile shape, then three check
shapes). Every value's shape is tracked concretely at each probe (``Dim.vals``), and a dim is
``static`` when it comes from a constant (channels, features). An op is only applied where it is
valid at every probe (a 3x3 unpadded conv needs spatial size >= 3 everywhere; an add needs equal or
broadcastable sizes everywhere), so the network runs eagerly at all four shapes; generation then
runs it eagerly to be sure (outputs finite, sizes non-empty) and draws again with a derived seed
if not.

Float comparisons, ``argmax`` and masks are only taken of "exact" values (inputs and values
derived from them by ops that do not round: views, slices, ``relu``, ``abs``, max/min...): on a
rounded value, a one-ulp difference between two correct implementations would flip the result.
Values that went through float16/bfloat16 carry their precision (``eps``) so the checker can
compare them at their own precision.

``Network.source()`` is a runnable module plus an input maker; ``describe()`` prints it.
"""

from __future__ import annotations

import random

import torch

from tests.generated.netops import (_NON_FLOAT_OPS, _OPS, VOCAB, add_float_argument, add_input_write,
                                    add_int_argument, add_row_pick)
from tests.generated.network import _EPS, NPROBES, Dim, Input, Network, Step, Val

__all__ = ["Network", "generate"]


# -------------------------------------------------------------------------------------------------
# the generator
# -------------------------------------------------------------------------------------------------


class _Gen:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.seed = seed
        self.vals: dict[str, Val] = {}
        self.steps: list[Step] = []
        self.inputs: list[Input] = []
        self.probes: list[dict[str, int]] = []
        self.n = 0

    # --------------------------------------------------------------- bookkeeping
    def fresh(self, prefix: str = "v") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def add_input(self, name: str, template: tuple, dtype: str, high: int = 0) -> Val:
        self.inputs.append(Input(name, template, dtype, high))
        dims = tuple(Dim.const(t) if isinstance(t, int) else Dim(tuple(p[t] for p in self.probes), False)
                     for t in template)
        v = Val(name, dims, dtype, exact=True)
        self.vals[name] = v
        return v

    def emit(self, expr: str, dims, dtype: str, uses: list[Val], decls=(), pre=(), exact=False) -> Val:
        name = self.fresh()
        eps = max([_EPS[dtype]] + [u.eps for u in uses])
        v = Val(name, tuple(dims), dtype, exact=exact and all(u.exact for u in uses), eps=eps)
        self.steps.append(Step(name, list(pre) + [f"{name} = {expr}"], list(decls), [u.name for u in uses]))
        self.vals[name] = v
        return v

    def module(self, ctor: str, extra: tuple = ()) -> str:
        name = self.fresh("m")
        return name, [f"self.{name} = {ctor}", *[e.format(m=f"self.{name}") for e in extra]]

    def pick(self, pred, recent: int = 5) -> Val | None:
        cands = [v for v in self.vals.values() if pred(v)]
        if not cands:
            return None
        return self.rng.choice(cands[-recent:]) if self.rng.random() < 0.75 else self.rng.choice(cands)

    def choice(self, seq):
        return self.rng.choice(list(seq))


# ------------------------------------------------------------------ families and probes
def _sizes(rng: random.Random, lo: int, hi: int, even: bool, allow_one: bool) -> list[int]:
    def one(compile_shape):
        if allow_one and not compile_shape and rng.random() < 0.08:
            return 2 if even else 1
        n = rng.randint(lo, hi)
        return n + (n % 2) if even else n
    return [one(True)] + [one(False) for _ in range(NPROBES - 1)]


def _draw(seed: int) -> _Gen:
    g = _Gen(seed)
    rng = g.rng
    family = rng.choice(["image", "image", "image", "seq", "seq", "flat"])
    batch = [rng.choice([2, 2, 3, 1])] + [1] + [rng.randint(1, 4) for _ in range(NPROBES - 2)]
    rest = batch[1:]
    rng.shuffle(rest)
    batch = batch[:1] + rest
    even = family == "image" and rng.random() < 0.3
    if family == "image":
        hs, ws = _sizes(rng, 3, 19, even, True), _sizes(rng, 3, 19, even, True)
        g.probes = [{"B": b, "H": h, "W": w} for b, h, w in zip(batch, hs, ws)]
        c = rng.choice([1, 2, 3, 4, 6, 8])
        x = g.add_input("x", ("B", c, "H", "W"), "float32")
        if rng.random() < 0.25:
            g.add_input("t", ("B", rng.choice([4, 8])), "float32")
    elif family == "seq":
        ns, ms = _sizes(rng, 2, 24, False, True), _sizes(rng, 1, 12, False, True)
        g.probes = [{"B": b, "N": n, "M": m} for b, n, m in zip(batch, ns, ms)]
        x = None
        if rng.random() < 0.5:
            g.add_input("ids", ("B", "N"), "int64", high=VOCAB)
        if rng.random() < 0.8 or not g.inputs:
            x = g.add_input("x", ("B", "N", rng.choice([4, 6, 8, 16])), "float32")
        if rng.random() < 0.3 and x is not None:
            g.add_input("ctx", ("B", "M", rng.choice([4, 8])), "float32")
    else:
        g.probes = [{"B": b} for b in batch]
        g.add_input("x", ("B", rng.choice([3, 8, 16])), "float32")
    g.family = family
    nsteps = rng.randint(2, 7)
    ops, weights = zip(*_OPS)
    tries = 0
    while len(g.steps) < nsteps and tries < 200:
        tries += 1
        a = g.pick(lambda v: True, recent=3)
        if a.dtype in _NON_FLOAT_OPS:  # integers and masks: the ops that consume them
            op = rng.choices(*zip(*_NON_FLOAT_OPS[a.dtype]))[0]
        else:
            op = rng.choices(ops, weights)[0]
        res = op(g, a)
        if res is not None and any(min(d.vals) < 1 for d in res.dims):
            g.steps.pop()  # an empty tensor somewhere: not what these tests are about
            del g.vals[res.name]
    for stream, chance, extra in _EXTRAS:  # each from a generator of its own: the rest stays as drawn
        extra_rng = random.Random(seed * 7919 + stream)
        if extra_rng.random() < chance:
            extra(g, extra_rng)
    return g


#: steps appended after the drawn ones, in this order: (generator stream, chance, maker)
_EXTRAS = ((1, 0.3, add_int_argument), (2, 0.3, add_float_argument), (4, 0.15, add_row_pick),
           (3, 0.15, add_input_write))


def _network(g: _Gen) -> Network:
    used = {u for s in g.steps for u in s.uses}
    outs = [s.out for s in g.steps if s.out not in used][-3:] or [g.steps[-1].out]
    net = Network(g.seed, g.family, g.inputs, g.steps, outs, g.probes, dict(g.vals))
    return net.without_dead_steps()


def _runs_eagerly(net: Network) -> bool:
    try:
        model, make = net.build()
        with torch.no_grad():
            for i, p in enumerate(net.probes):
                outs = model(*make(**p, seed=i))
                for o in outs:
                    if o.numel() == 0 or (o.is_floating_point() and not (torch.isfinite(o).all() and
                                                                         o.abs().max() < 1e4)):
                        return False
                if tuple(o.shape for o in outs) != tuple(
                        tuple(d.vals[i] for d in net.vals[n].dims) for n in net.outputs):
                    raise AssertionError(f"generator shape tracking is wrong for seed {net.seed}")
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - an invalid draw: draw again
        return False
    return True


def generate(seed: int) -> Network:
    """The network of ``seed`` (deterministic: the same seed always gives the same source)."""
    for attempt in range(20):
        net = _network(_draw(seed * 1000 + attempt))
        net.seed = seed * 1000 + attempt
        if net.steps and _runs_eagerly(net):
            return net
    raise RuntimeError(f"no valid network drawn for seed {seed} in 20 attempts (a generator bug)")

