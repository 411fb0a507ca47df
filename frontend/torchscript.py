"""The TorchScript frontend: ``torch.jit.trace`` (``allow_tracing=True``) or a ready
``ScriptModule``, converted to an ``ExportedProgram`` so it lands in the same importer.

The conversion uses PyTorch's TorchScript-to-export converter, which rebuilds an FX graph from
the TorchScript graph and re-exports it with every input dim dynamic. Blade then imports it like
any other exported program. Tracing records one path through Python control flow: a model that
branches on tensor values should use the torch.export frontend instead.
"""

from __future__ import annotations

import torch
import torch.fx.experimental._config as fx_config
from torch.export import ExportedProgram


def is_torchscript(module) -> bool:
    return isinstance(module, (torch.jit.ScriptModule, torch.jit.ScriptFunction))


def torchscript_to_export(module, args: tuple, kwargs: dict, trace: bool) -> ExportedProgram:
    from torch._export.converter import TS2EPConverter

    if kwargs:
        raise ValueError("the TorchScript frontend takes positional model_inputs only; pass "
                         f"{sorted(kwargs)} positionally or use the torch.export frontend")
    if trace:
        with torch.no_grad():
            try:
                module = torch.jit.trace(module, args, strict=False, check_trace=False)
            except Exception as e:  # noqa: BLE001 - re-raised with the context the user needs
                raise RuntimeError(f"torch.jit.trace failed on {type(module).__name__}: {e}") from e
    try:
        with torch.no_grad(), fx_config.patch(backed_size_oblivious=True):
            return TS2EPConverter(module, args).convert()
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"converting the TorchScript graph of {type(module).__name__} failed: "
                           f"{type(e).__name__}: {e}. Use the torch.export frontend "
                           "(allow_tracing=False) for this model.") from e
