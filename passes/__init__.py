"""Blade's passes, one per file, registered once here by their kebab-case name.

The name is the ``blade-opt -p`` flag and the name of the lit test file (``tests/lit/<name>.mlir``).
Imports are lazy so that listing passes costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # listing passes imports no IR (and so no torch)
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


def _sink_weight_casts():
    from blade.passes.sink_weight_casts import SinkWeightCasts

    return SinkWeightCasts


def get_all_passes() -> dict[str, Callable[[], type[ModulePass]]]:
    return {
        "canonicalize": _canonicalize,
        "shape-propagation": _shape_propagation,
        "convert-fp16": _convert_fp16,
        "cluster-supported": _cluster_supported,
        "layout-nhwc": _layout_nhwc,
        "fuse-stitch": _fuse_stitch,
        "sink-weight-casts": _sink_weight_casts,
    }


#: One sentence per pass for ``blade-opt --list-passes`` (kept here so listing imports nothing).
SUMMARIES = {
    "canonicalize": "Removes ops that do nothing, merges chains of views and permutes, turns a causal mask "
                    "built from positions into is_causal, and deletes dead ops.",
    "shape-propagation": "Gives every value's dims as expressions of the input symbols and checks each op's "
                         "shape rule.",
    "convert-fp16": "Runs a float32 program in float16 the way eager PyTorch runs model.half(), keeping "
                    "norm statistics and softmax in float32.",
    "cluster-supported": "Groups the ops Blade compiles into blade.cluster regions, with eager-fallback ops "
                         "between them.",
    "layout-nhwc": "Runs convolutions and the memory-bound ops around them channels-last, so no transpose is "
                   "left between a convolution and its norm.",
    "fuse-stitch": "Groups memory-bound ops (GroupNorm+SiLU, LayerNorm, softmax, GEGLU, elementwise chains) "
                   "into blade.fused kernels.",
    "sink-weight-casts": "Moves work that reads only weights (float16 casts of float32 weights) to just before "
                         "its first use, so their buffers are not all live at once.",
}


def pass_summary(name: str) -> str:
    return SUMMARIES[name]


def get_pass(name: str) -> type[ModulePass]:
    passes = get_all_passes()
    if name not in passes:
        raise KeyError(f"unknown pass '{name}'; known passes: {', '.join(sorted(passes))}")
    return passes[name]()
