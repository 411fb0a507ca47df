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
import torch.nn.functional as F
import torch.utils._pytree as pytree
from torch.export import Dim, ExportedProgram
from torch.overrides import TorchFunctionMode

from blade.config import Config


def dynamic_shapes_for(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config,
                       pin_ones: bool = False) -> dict[str, Any]:
    """``dynamic_shapes`` for torch.export, keyed by forward's parameter names; ``pin_ones`` keeps
    every example dim of size 1 static."""
    sig = inspect.signature(module.forward)
    bound = sig.bind(*args, **kwargs)
    spec: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        param = sig.parameters[name]
        if param.kind == inspect.Parameter.VAR_POSITIONAL:
            spec[name] = tuple(_spec_for(f"{name}[{i}]", v, config, pin_ones) for i, v in enumerate(value))
        elif param.kind == inspect.Parameter.VAR_KEYWORD:
            spec[name] = {k: _spec_for(k, v, config, pin_ones) for k, v in value.items()}
        else:
            spec[name] = _spec_for(name, value, config, pin_ones)
    return spec


def _spec_for(name: str, value: Any, config: Config, pin_ones: bool = False) -> Any:
    def leaf(path, v):
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            return None
        key = name + pytree.keystr(path)
        pinned = set(config.static_dims.get(key, ()))
        out = {}
        for i in range(v.dim()):
            if i in pinned or config.dynamic == "none" or v.shape[i] == 0 or (pin_ones and v.shape[i] == 1):
                continue  # pinned by the user, a zero-size dim, or a size-1 dim (see export_module)
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


def export_module(module: torch.nn.Module, args: tuple, kwargs: dict, config: Config,
                  pin_ones: bool = False) -> ExportedProgram:
    """torch.export with Blade's policy; raises a clear error naming the failing construct.

    Size-oblivious export treats every symbolic dim as "not 1" where an op's meaning depends on
    it, without recording a guard. For an example dim of size 2 that is what Blade wants (the
    importer adds ``s != 1`` guards where the meaning changes, e.g. ``squeeze``), but an example
    dim of size 1 traced that way gives a program that is wrong for the example itself
    (``squeeze`` keeps the dim). So when the traced program has a size-1-sensitive op over a
    symbolic dim whose example size is 1, or when export fails with size-1 example dims, export
    runs again with every size-1 example dim static (torch's usual 0/1 specialisation).
    ``pin_ones`` asks for that export directly (the importer could not use the other one).
    """
    args, kwargs = _unalias(args, kwargs)
    ep = None
    if not pin_ones:
        try:
            ep = _export(module, args, kwargs, dynamic_shapes_for(module, args, kwargs, config))
        except Exception as e:  # noqa: BLE001 - retried or re-raised with context below
            if not has_dynamic_ones(args, kwargs, config):
                raise _export_error(module, e) from e
    if ep is None or _size_one_sensitive(ep):
        try:
            ep = _export(module, args, kwargs, dynamic_shapes_for(module, args, kwargs, config, pin_ones=True))
        except Exception as e:  # noqa: BLE001 - re-raised with the context the user needs
            raise _export_error(module, e) from e
    return ep


def _export(module, args, kwargs, dyn) -> ExportedProgram:
    with torch.no_grad(), fx_config.patch(backed_size_oblivious=True), AttentionBackendGuardsSuppressed():
        return torch.export.export(module, args, kwargs, dynamic_shapes=dyn, strict=False)


SDPA_NOTE = ("guards from scaled_dot_product_attention's backend selection were not recorded: they "
             "choose among flash/efficient/math kernels and output strides, never values or shapes, "
             "and Blade lowers the op itself")


_SDPA_OP = torch.ops.aten.scaled_dot_product_attention.default


class AttentionBackendGuardsSuppressed(TorchFunctionMode):
    """Trace ``F.scaled_dot_product_attention`` with the shape environment's guards suppressed.

    On CUDA, FakeTensor runs SDPA's C++ composite, whose backend choice (flash, memory-efficient
    or math, and the output strides each gives) asks questions such as ``batch != 1``; each
    answer becomes a guard, so batch 1 compiled a whole second variant of ViT/Llama/CLIP models
    (issue 8). The graph keeps the op whole (``aten.scaled_dot_product_attention``), its output
    shape is fixed by its schema, and every backend computes the same values, so those guards
    cannot change what Blade compiles. Suppressed guards also add no replacement or axiom that
    later code could rely on. Guards the model's own code asks (``if q.shape[0] != 1``) are
    outside the call and recorded as usual. The aten op is matched too: ``run_decompositions``
    re-propagates the graph's nodes and would otherwise record the same guards again.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention and func is not _SDPA_OP:
            return func(*args, **kwargs)
        fake_mode = torch._guards.detect_fake_mode(args)
        env = getattr(fake_mode, "shape_env", None)
        if env is None:
            return func(*args, **kwargs)
        with env.suppress_guards():
            return func(*args, **kwargs)


def _export_error(module: torch.nn.Module, e: Exception) -> RuntimeError:
    return RuntimeError(
        f"torch.export could not capture {type(module).__name__}: {type(e).__name__}: {e}\n"
        "Blade needs an exportable forward. If the model branches on tensor values, pin the "
        "dims it branches on with Config(static_dims=...), or use allow_tracing=True to trace "
        "with torch.jit.trace instead.")


def has_dynamic_ones(args: tuple, kwargs: dict, config: Config) -> bool:
    """Whether some example dim is 1 and would be exported as a symbol."""
    if config.dynamic == "none":
        return False
    return any(isinstance(t, torch.Tensor) and 1 in t.shape for t in pytree.tree_leaves((args, kwargs)))


# ops whose result shape depends on whether an input dim is 1 (dims they inspect: None = all)
_SQUEEZES = {"squeeze.default", "squeeze.dim", "squeeze.dims", "squeeze_copy.default",
             "squeeze_copy.dim", "squeeze_copy.dims"}


def squeezed_dims(node: torch.fx.Node) -> list[int]:
    """The input dims a squeeze node inspects (every dim for ``squeeze()``)."""
    rank = node.args[0].meta["val"].dim()
    if len(node.args) < 2:
        return list(range(rank))
    dims = node.args[1]
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted({d % rank for d in dims}) if rank else []


def _size_one_sensitive(ep: ExportedProgram) -> bool:
    """A squeeze over a symbolic dim whose example size is 1 (traced as if it were not 1)."""
    for node in ep.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        name = node.target._overloadpacket.__name__ + "." + node.target._overloadname
        if name not in _SQUEEZES:
            continue
        shape = node.args[0].meta["val"].shape
        for d in squeezed_dims(node):
            size = shape[d]
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
    with fx_config.patch(backed_size_oblivious=True), AttentionBackendGuardsSuppressed():
        return ep.run_decompositions(keep)


def graph_targets(ep: ExportedProgram) -> set:
    return {n.target for n in ep.graph.nodes if n.op == "call_function"}


def has_mutation(ep: ExportedProgram) -> bool:
    return any(isinstance(t, torch._ops.OpOverload) and t._schema.is_mutable for t in graph_targets(ep))
