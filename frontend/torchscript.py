"""The TorchScript frontend: ``torch.jit.trace`` (``allow_tracing=True``) or a ready
``ScriptModule``, converted to an ``ExportedProgram`` so it lands in the same importer.

The conversion uses PyTorch's TorchScript-to-export converter, which rebuilds an FX graph from
the TorchScript graph and re-exports it with every input dim dynamic. Blade then imports it like
any other exported program. Tracing records one path through Python control flow. A program
traced through a branch on a tensor value or size would answer wrongly for inputs that take the
other path, so a ``TracerWarning`` saying the trace may be incorrect (a tensor converted to a
Python bool/int/float, iteration over a tensor...) is a refusal (``CaptureError``), not a warning.
"""

from __future__ import annotations

import os
import warnings

import torch
import torch.fx.experimental._config as fx_config
from torch.export import ExportedProgram

from blade.frontend.export import CAPTURE_LOCK, CaptureError


def is_torchscript(module) -> bool:
    return isinstance(module, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def torchscript_to_export(module, args: tuple, kwargs: dict, trace: bool) -> ExportedProgram:
    from torch._export.converter import TS2EPConverter

    if kwargs:
        raise ValueError("the TorchScript frontend takes positional model_inputs only; pass "
                         f"{sorted(kwargs)} positionally or use the torch.export frontend")
    with CAPTURE_LOCK:
        if trace:
            module = _trace(module, args)
        try:
            with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
                return TS2EPConverter(module, args).convert()
        except Exception as e:  # noqa: BLE001
            raise CaptureError(f"converting the TorchScript graph of {type(module).__name__} failed: "
                               f"{type(e).__name__}: {e}. Use the torch.export frontend "
                               "(allow_tracing=False) for this model.") from e


def _trace(module, args: tuple):
    """``torch.jit.trace``, refusing a trace that PyTorch itself says may be incorrect."""
    name = type(module).__name__
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        try:
            traced = torch.jit.trace(module, args, strict=False, check_trace=False)
        except Exception as e:  # noqa: BLE001 - re-raised with the context the user needs
            raise CaptureError(f"torch.jit.trace failed on {name}: {e}") from e
    # PyTorch's own functions convert sizes for argument checks that only raise (GroupNorm's
    # "more than 1 value per channel"); a conversion anywhere else is the model's control flow.
    torch_dir = os.path.dirname(torch.__file__) + os.sep
    unsafe = [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)
              and "might cause the trace to be incorrect" in str(w.message)
              and not os.path.abspath(w.filename).startswith(torch_dir)]
    for w in caught:  # hand the other warnings on
        if w not in unsafe:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if unsafe:
        w = unsafe[0]
        raise CaptureError(
            f"tracing {name} recorded one path through Python control flow at {w.filename}:{w.lineno} "
            f"({str(w.message).split('.')[0]}): the traced program would answer wrongly for inputs that take "
            "another path. Use the torch.export frontend (allow_tracing=False); rewrite a branch on a tensor "
            "value with torch.cond(pred, true_fn, false_fn, operands)")
    return traced
