"""Blade's passes, one per file, registered once here by their kebab-case name.

The name is the ``blade-opt -p`` flag and the name of the lit test file (``tests/lit/<name>.mlir``).
Imports are lazy so that listing passes costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from blade.ir import ModulePass


def _canonicalize():
    from blade.passes.canonicalize import Canonicalize

    return Canonicalize


def _shape_propagation():
    from blade.passes.shape_propagation import ShapePropagation

    return ShapePropagation


def _convert_fp16():
    from blade.passes.convert_fp16 import ConvertFp16

    return ConvertFp16


def _cluster_supported():
    from blade.passes.cluster_supported import ClusterSupported

    return ClusterSupported


def _layout_nhwc():
    from blade.passes.layout_nhwc import LayoutNhwc

    return LayoutNhwc


def _fuse_stitch():
    from blade.passes.fuse_stitch import FuseStitch

    return FuseStitch


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return {
        "canonicalize": _canonicalize,
        "shape-propagation": _shape_propagation,
        "convert-fp16": _convert_fp16,
        "cluster-supported": _cluster_supported,
        "layout-nhwc": _layout_nhwc,
        "fuse-stitch": _fuse_stitch,
    }


def get_pass(name: str) -> type[ModulePass]:
    passes = get_all_passes()
    if name not in passes:
        raise KeyError(f"unknown pass '{name}'; known passes: {', '.join(sorted(passes))}")
    return passes[name]()
