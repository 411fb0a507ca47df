"""Guard classes compiled before they are called (``Config.precompile_guard_classes``).

A variant serves every size of its guard class. A call outside it (an odd latent where the example
was a multiple of 8, batch 1 where a branch tests ``batch == 1``) compiles another variant, and
that compile's capture (torch.export) is most of its cost: 16-18 s for the SD 1.5 UNet on an H200,
even where every kernel is shared with the first variant. Speculation moves that cost off the call:
after the first compile, a background thread walks the input sizes next to the example's, finds
the ones that no variant accepts, and compiles their variants, so that a later call of such a size
finds its variant ready.

This file holds the search, which knows only symbolic input dims and concrete sizes:

* an input dim that is ``a*s + c`` in one symbol ``s`` moves with every other dim of ``s``: the
  dim of ``s`` with the smallest coefficient takes a nearby value ``v`` and the others follow
  (``a*t + c`` at ``t = (v - c0)/a0``; a value where one of them is not a whole number is skipped).
  That keeps sizes the model relates related (a ControlNet's image at 8x the latent);
* single moves first (nearest values first, then 1), then pairs of the moves that left every
  known class, as the both-odd latent is its own class;
* dims of several symbols or of none are never moved: they follow from the others or are static.

``precompile_neighbours`` drives it for a ``BladeModule`` (``compiler/module.py``): it asks which
candidates no variant accepts, makes inputs of those sizes from the example's own values
(``resize_like``) and compiles them under the module's compile lock, quietly: a candidate the
model rejects is dropped, never remembered as an eager signature.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import sympy
import torch
import torch.utils._pytree as pytree

from blade.runtime.call_signature import autocast_scope, describe_inputs, flatten_call
from blade.variant import compiled_programs

if TYPE_CHECKING:
    from blade.module import BladeModule

Shapes = list[tuple[int, ...]]


def _affine(d) -> tuple[str, int, int] | None:
    """``(symbol, a, c)`` for a dim ``a*symbol + c`` with integers ``a > 0`` and ``c``, else None."""
    d = sympy.sympify(d)
    if d.is_Integer or len(d.free_symbols) != 1:
        return None
    (s,) = d.free_symbols
    poly = sympy.Poly(d, s) if d.is_polynomial(s) else None
    if poly is None or poly.degree() != 1:
        return None
    a, c = poly.all_coeffs()
    if not (a.is_Integer and c.is_Integer and a > 0):
        return None
    return s.name, int(a), int(c)


def _moves(input_dims: Sequence[Sequence], example: Shapes, reach: int) -> list[tuple[str, dict]]:
    """Single moves: ``(description, {(input, dim): new size})`` per symbol and nearby value."""
    groups: dict[str, list[tuple[int, int, int, int]]] = {}
    for i, dims in enumerate(input_dims):
        for j, d in enumerate(dims):
            form = _affine(d)
            if form is not None:
                groups.setdefault(form[0], []).append((i, j, form[1], form[2]))
    moves = []
    for name, places in groups.items():
        i0, j0, a0, c0 = min(places, key=lambda p: p[2])
        n = example[i0][j0]
        values = [n + k for step in range(1, reach + 1) for k in (step, -step)] + [1]
        for v in dict.fromkeys(values):
            if v < 1 or v == n:
                continue
            t = Fraction(v - c0, a0)
            new = {}
            for i, j, a, c in places:
                size = a * t + c
                if size.denominator != 1 or size < 1:
                    break
                new[(i, j)] = int(size)
            else:
                moves.append((f"{name}: {n} -> {v}", new))
    return moves


def _apply(example: Shapes, changes: dict) -> Shapes:
    shapes = [list(s) for s in example]
    for (i, j), size in changes.items():
        shapes[i][j] = size
    return [tuple(s) for s in shapes]


def candidates(input_dims: Sequence[Sequence], example: Shapes,
               accepted: Callable[[Shapes], bool], reach: int = 16) -> Iterator[tuple[str, Shapes]]:
    """Sizes next to ``example`` that no variant accepts (``accepted`` is asked again before each
    one is yielded, so a variant compiled meanwhile removes the sizes it serves): single moves,
    then pairs of the single moves that left every class. ``input_dims``: per tensor input, its
    dims as expressions (ints for static dims); ``reach``: the farthest move of a dim."""
    singles = _moves(input_dims, example, reach)
    leaving = []
    for what, change in singles:
        shapes = _apply(example, change)
        if not accepted(shapes):
            leaving.append((what, change))
            yield what, shapes
    for k, (what_a, a) in enumerate(leaving):
        for what_b, b in leaving[k + 1:]:
            if a.keys() & b.keys():
                continue  # two moves of the same dim
            shapes = _apply(example, {**a, **b})
            if not accepted(shapes):
                yield f"{what_a}, {what_b}", shapes


def resize_like(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` made of ``t``'s own values, repeated (token ids stay valid ids, masks
    stay masks, the value range of activations is kept); ``t`` itself where the shape is its own."""
    if tuple(t.shape) == tuple(shape):
        return t
    numel = 1
    for n in shape:
        numel *= n
    flat = t.detach().reshape(-1)
    if flat.numel() == 0:
        return torch.zeros(shape, dtype=t.dtype, device=t.device)
    index = torch.arange(numel, device=t.device) % flat.numel()
    return flat[index].reshape(shape).clone()


class _Sized:
    """Only a shape: what ``Variant.accepts`` reads of a tensor, for sizes not yet made."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.dtype = self.device = None


def precompile_neighbours(m: "BladeModule", args: tuple, kwargs: dict, autocast: tuple = ()) -> None:
    """``_precompile_neighbours`` in the example call's ``torch.autocast`` regions (``autocast``,
    ``autocast_state``'s form; a new thread starts outside any), so its variants serve calls made
    as the example was."""
    with autocast_scope(autocast):
        _precompile_neighbours(m, args, kwargs)


def _precompile_neighbours(m: "BladeModule", args: tuple, kwargs: dict) -> None:
    """The background half of ``Config.precompile_guard_classes`` (a thread ``BladeModule`` starts
    after its first compile): compile the variants of input sizes next to the example's that no
    variant accepts (``candidates``), one at a time under the module's compile lock, as a call
    would. A candidate the model rejects (its sizes may be ones the model never takes) is dropped
    quietly (``verbose`` says why); it is never remembered as a signature that runs eagerly."""
    from blade.module import _one_line

    tensors, _, signature = flatten_call(args, kwargs, m.original.training)
    with m._compile_lock:
        first = m._variants[0] if m._variants else None
        seen = m._structure_seen
    if first is None or not hasattr(first.executor, "input_dims") or len(first.executor.input_dims) != len(tensors):
        return
    dims = [d for _, d in first.executor.input_dims]
    flat, spec = pytree.tree_flatten((args, kwargs))

    def accepted(shapes) -> bool:
        sized = [_Sized(s) for s in shapes]
        return any(m._select(sized, signature, variants)[0] is not None
                   for variants in (m._variants, m._beyond_limit))

    done = 0
    try:
        for what, shapes in candidates(dims, [tuple(t.shape) for t in tensors], accepted):
            if done >= m._config.precompile_guard_classes:
                return
            new = iter([resize_like(t, s) for t, s in zip(tensors, shapes)])
            call = pytree.tree_unflatten([next(new) if isinstance(x, torch.Tensor) else x for x in flat], spec)
            new_tensors = flatten_call(*call, m.original.training)[0]
            with m._compile_lock:
                if m._structure_seen != seen or not m._variants:
                    return  # the user changed the module: its variants are gone
                if accepted(shapes):
                    continue
                if compiled_programs(m._variants) >= m._config.max_variants:
                    return
                start = time.perf_counter()
                try:
                    variant = m.compile_variant(*call)
                except Exception as e:  # noqa: BLE001 - a size the model may never take
                    if m._config.verbose:
                        print(f"[blade] {m.name}: precompiling for inputs {describe_inputs(new_tensors)} "
                              f"({what}) failed: {_one_line(e)}", file=sys.stderr, flush=True)
                    continue
                index = len(m._variants) - 1
                if variant.accepts(new_tensors, signature)[0] is None:  # a call there compiles it again
                    m._variants.remove(variant)
                    continue
            done += 1
            print(f"[blade] {m.name}: variant {index} precompiled in the background for inputs "
                  f"{describe_inputs(new_tensors)} ({what}; {time.perf_counter() - start:.1f} s): calls of "
                  "its guard class will not wait for a compile", file=sys.stderr, flush=True)
    except Exception as e:  # noqa: BLE001 - speculation must never break the module
        print(f"[blade] {m.name}: background precompiling stopped ({_one_line(e)})", file=sys.stderr, flush=True)
