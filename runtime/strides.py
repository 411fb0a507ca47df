"""Stride facts about actual tensors that both kernel launchers need (the IR-driven one in
``launch.py`` and the Program executor, which must not import the compiler): one definition, so
the two never prove addressing differently."""

from __future__ import annotations

import torch


def collapsed_stride(t: torch.Tensor, dims: list[int]) -> int | None:
    """The one stride that addresses the consecutive dims ``dims`` of ``t`` as a flat index
    (``offset = flat * stride`` for every coordinate), or ``None`` when no stride does.

    Exact for this tensor: consecutive dims ``a`` (outer) and ``b`` (inner) of sizes > 1 collapse
    iff ``stride(a) == stride(b) * size(b)``. A size-1 dim is skipped: its only coordinate is 0,
    so it adds nothing to an offset whatever its stride (PyTorch gives such dims arbitrary
    strides)."""
    live = [j for j in dims if t.shape[j] != 1]
    if not live:
        return 0
    for a, b in zip(live, live[1:]):
        if t.stride(a) != t.stride(b) * t.shape[b]:
            return None
    return t.stride(live[-1])


def element_span(t: torch.Tensor) -> int:
    """Elements from ``t``'s first to one past its last element (0 when empty): every offset a
    kernel reads from ``t``'s data pointer lies in ``[0, span)`` (the bounds checks' limit)."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))


def table_args(i: int, t: torch.Tensor) -> dict[str, int]:
    """The arguments that locate the rows of a row gather's table, input ``i`` of a kernel
    (``codegen/emit.py``): its stride ``t{i}_{j}`` and size ``V{i}_{j}`` along each dim but the
    last (whose stride the launcher has made 1)."""
    out = {}
    for j in range(t.dim() - 1):
        out[f"t{i}_{j}"] = t.stride(j)
        out[f"V{i}_{j}"] = t.shape[j]
    return out
