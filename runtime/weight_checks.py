"""The per-call weight checks of the C++ step loop (``runtime/native_loop.py``), deferred in
groups: ``NativeLoop.accepts`` compares the weights the first entries of the C++ list read, and
``NativeLoop.run`` each later group just before the first entry that reads it (a ("check", g) op),
while the GPU computes the entries before it. What is here: the groups (by the entry that first
reads each weight), the op list with the checks placed, and the small helpers the checks use."""

from __future__ import annotations

import operator
import os

#: ``BLADE_DEFERRED_WEIGHT_CHECKS=0``: every weight is checked before a call's first entry
DEFERRED_WEIGHT_CHECKS = os.environ.get("BLADE_DEFERRED_WEIGHT_CHECKS", "1") != "0"
#: C++ list entries before which deferred check group k+1 is compared (group 0: entries below the
#: first, compared in ``accepts``): the first group is small, so the GPU starts early
CHECK_GROUP_ENTRIES = (2, 8, 32, 128, 512)


class Bases(list):
    """A call's bases; ``deferred``: the accepted call whose weight addresses they hold for the
    check groups after the first (None: every weight was checked in ``accepts``)."""

    deferred = None


def pick(items: list, as_list: bool = False):
    """``items`` picked out of a list, as a tuple (a list with ``as_list``) whatever their number."""
    if not items:
        return (lambda xs: []) if as_list else (lambda xs: ())
    if len(items) == 1:
        k = items[0]
        return (lambda xs: [xs[k]]) if as_list else (lambda xs: (xs[k],))
    get = operator.itemgetter(*items)
    return (lambda xs: list(get(xs))) if as_list else get


def check_groups(first_entry: list[int], entries: int) -> list[list[int]]:
    """The static checks (by index) of each deferred check group: group 0 holds those the entries
    before ``CHECK_GROUP_ENTRIES[0]`` read first, group k those first read before
    ``CHECK_GROUP_ENTRIES[k]``, the last group the rest (read by later entries, or by none: a
    weight only a Python step reads, which reads the tensor itself)."""
    bounds = [b for b in CHECK_GROUP_ENTRIES if b < entries] + [None]
    groups: list[list[int]] = [[] for _ in bounds]
    for k, e in enumerate(first_entry):
        g = next(j for j, b in enumerate(bounds) if b is None or e < b)
        groups[g].append(k)
    return groups


def with_deferred_checks(ops: list[tuple], entries: int) -> list[tuple]:
    """``ops`` with a ("check", g) just before entry ``CHECK_GROUP_ENTRIES[g - 1]`` for every
    deferred check group g >= 1 (a native range split there), so no entry runs before the weights
    it reads first were compared; groups that no later entry reads are compared at the end."""
    bounds = [b for b in CHECK_GROUP_ENTRIES if b < entries]
    out: list[tuple] = []
    g = 1  # the next group to compare (group 0: in ``accepts``)
    for op in ops:
        if op[0] != "native":
            out.append(op)
            continue
        lo, hi = op[1], op[2]
        while g <= len(bounds) and bounds[g - 1] < hi:
            if lo < bounds[g - 1]:
                out.append(("native", lo, bounds[g - 1]))
                lo = bounds[g - 1]
            out.append(("check", g))
            g += 1
        if lo < hi:
            out.append(("native", lo, hi))
    out += [("check", k) for k in range(g, len(bounds) + 1)]
    return out
