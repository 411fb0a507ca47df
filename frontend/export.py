"""The torch.export frontend: run ``torch.export`` with Blade's dynamic-shape policy.

Policy: every dim of every tensor input is dynamic (``Dim.AUTO``: dims the program fixes, such as
channels that must match a weight, become constants) unless ``Config`` pins it;
``Config.dim_ranges`` bounds a dim. Export runs in non-strict mode with PyTorch's
*size-oblivious* treatment of backed sizes, so an example dim of size 2 does not make the
program assume "size != 1": one export serves batch 1 too.

No decomposition pass is run: Blade imports the pre-dispatch ATen graph that export produces, in
which the high-level ops it implements itself (``conv2d``, ``linear``, ``group_norm``,
``layer_norm``, ``scaled_dot_product_attention``, ``softmax``, ``upsample_nearest2d``...) are
still whole. Only when the graph holds ops Blade has no lowering for, or in-place ops, does it
run ``run_decompositions`` with a table restricted to those ops (functionalising the graph), so
the cost of a full core-ATen decomposition is never paid for models Blade covers.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx.experimental._config as fx_config
import torch.utils._pytree as pytree
from torch.export import Dim, ExportedProgram

from blade.config import Config


def dynamic_shapes_for(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config) -> dict[str, Any]:
    """``dynamic_shapes`` for torch.export, keyed by forward's parameter names."""
    sig = inspect.signature(module.forward)
    bound = sig.bind(*args, **kwargs)
    spec: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            spec[name] = tuple(_spec_for(f"{name}[{i}]", v, config) for i, v in enumerate(value))
        elif param.kind == inspect.Parameter.VAR_KEYWORD:
            spec[name] = {k: _spec_for(k, v, config) for k, v in value.items()}
        else:
            spec[name] = _spec_for(name, value, config)
    return spec


def _spec_for(name: str, value: Any, config: Config) -> Any:
    def leaf(path, v):
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            return None
        key = name + pytree.keystr(path)
        pinned = set(config.static_dims.get(key, ()))
        out = {}
        for i in range(v.dim()):
            if i in pinned or config.dynamic == "none" or v.shape[i] == 0:
                continue  # pinned by the user, or a zero-size dim (kept static)
            lo, hi = config.dim_ranges.get(key, {}).get(i, (None, None))
            out[i] = Dim.AUTO(min=lo, max=hi) if (lo is not None or hi is not None) else Dim.AUTO
        return out or None

    return pytree.tree_map_with_path(leaf, value)


def _unalias(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Example inputs that share storage would be traced as one tensor (``f(x, x)`` becomes a
    program that reads its first argument twice); give each input its own copy."""
    seen: set[int] = set()

    def fresh(t):
        if not isinstance(t, torch.Tensor):
            return t
        key = t.untyped_storage().data_ptr() if t.numel() else id(t)
        if key in seen:
            return t.clone()
        seen.add(key)
        return t

    return pytree.tree_map(fresh, (args, kwargs))


def export_module(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config) -> ExportedProgram:
    """torch.export with Blade's policy; raises a clear error naming the failing construct."""
    args, kwargs = _unalias(args, kwargs)
    dyn = dynamic_shapes_for(module, args, kwargs, config)
    try:
        with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
            ep = torch.export.export(module, args, kwargs, dynamic_shapes=dyn, strict=False)
        if _squeezes_a_size_one_symbol(ep):
            # size-oblivious tracing kept a dim that eager squeezes (its example size is 1): the
            # graph's shapes are not eager's. Trace again with PyTorch's default 0/1
            # specialisation, which pins size-1 dims to 1 (only models that do this pay for it)
            with torch.no_grad():
                ep = torch.export.export(module, args, kwargs, dynamic_shapes=dyn, strict=False)
        return ep
    except Exception as e:  # noqa: BLE001 - re-raised with the context the user needs
        raise RuntimeError(
            f"torch.export could not capture {type(module).__name__}: {type(e).__name__}: {e}\n"
            "Blade needs an exportable forward. If the model branches on tensor values, pin the "
            "dims it branches on with Config(static_dims=...), or use allow_tracing=True to trace "
            "with torch.jit.trace instead.") from e


def _squeezes_a_size_one_symbol(ep: ExportedProgram) -> bool:
    squeezes = (torch.ops.aten.squeeze.dim, torch.ops.aten.squeeze.dims, torch.ops.aten.squeeze.default)
    for n in ep.graph.nodes:
        if n.op != "call_function" or n.target not in squeezes:
            continue
        shape = n.args[0].meta["val"].shape
        dims = range(len(shape)) if len(n.args) < 2 else (
            [n.args[1]] if isinstance(n.args[1], int) else list(n.args[1]))
        for d in dims:
            size = shape[d % len(shape)] if len(shape) else None
            if isinstance(size, torch.SymInt) and size.node.hint == 1:
                return True
    return False


def decompose_unsupported(ep: ExportedProgram, unsupported_targets: set, force: bool = False) -> ExportedProgram:
    """Decompose only ``unsupported_targets`` (those with a registered decomposition).

    ``force`` runs the (functionalising) retrace even with nothing to decompose, which removes
    in-place ops from the graph.
    """
    table = torch.export.default_decompositions()
    keep = {op: table[op] for op in list(table.keys()) if op in unsupported_targets}
    if not keep and not force:
        return ep
    with fx_config.patch(backed_size_oblivious=True):
        return ep.run_decompositions(keep)


def graph_targets(ep: ExportedProgram) -> set:
    return {n.target for n in ep.graph.nodes if n.op == "call_function"}


def has_mutation(ep: ExportedProgram) -> bool:
    return any(isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable for t in graph_targets(ep))
