"""Decoding the arguments of an eager fallback call: one walker for the compiler and the runtime.

A fallback op's call (``blade.torch_op`` in the IR, ``fallback_call`` in a Program) stores its
positional and keyword arguments as JSON: plain values as themselves, and one-key objects for what
JSON cannot hold: ``{"dtype": "float16"}``, ``{"memory_format": ...}``, ``{"layout": ...}``,
``{"kw": {...}}`` (the keyword dict), and leaves whose meaning depends on who runs the call: a
tensor operand (``{"t": i}``), a size (the IR writes a dim expression ``{"d": "s0*4"}``, a Program
a shape-program slot ``{"slot": 7}``), the device. ``decode_args`` walks the tree; the caller
passes how to read its own leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def decode_args(tree: Any, leaves: Mapping[str, Callable[[Any], Any]]) -> Any:
    """``tree`` with every one-key object replaced by its value: ``leaves[key](payload)`` for the
    caller's own keys, torch dtypes, memory formats and layouts, and keyword dicts walked in turn."""
    import torch  # here, not at the top: the IR dialects import this file and load torch lazily

    def dec(a):
        if isinstance(a, list):
            return [dec(x) for x in a]
        if isinstance(a, dict):
            for key, read in leaves.items():
                if key in a:
                    return read(a[key])
            for key in ("dtype", "memory_format", "layout"):
                if key in a:
                    return getattr(torch, a[key])
            if "kw" in a:
                return {k: dec(v) for k, v in a["kw"].items()}
        return a

    return dec(tree)
