"""``blade.optimize``: compile a module once for every input shape."""

from __future__ import annotations

from typing import Any

import torch

from blade.config import Config


def optimize(module: torch.nn.Module, model_inputs: Any = (), *, allow_tracing: bool | None = None,
             config: Config | None = None, model_kwargs: dict | None = None) -> torch.nn.Module:
    """Compile ``module`` and return a drop-in ``nn.Module`` serving every input shape.

    Args:
        module: the model (``nn.Module``) or a ``torch.jit.ScriptModule``; put it in ``eval()``.
        model_inputs: example positional inputs (a tensor or a tuple). Their values do not matter;
            their structure, dtypes and ranks do. Every tensor dim becomes a symbol unless
            ``Config.static_dims`` pins it.
        allow_tracing: ``True`` captures with ``torch.jit.trace`` (the TorchScript frontend)
            instead of ``torch.export``.
        config: options; defaults to the innermost ``with blade.Config(...)`` block.
        model_kwargs: example keyword inputs.

    The compile happens now, with the example inputs; later calls whose sizes fall outside the
    compiled guard class compile one more variant (see ``BladeModule``).
    """
    from blade.runtime.module import BladeModule

    config = config or Config.current()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"blade.optimize expects an nn.Module, got {type(module).__name__}")
    if module.training and not isinstance(module, torch.jit.ScriptModule):
        raise ValueError(f"{type(module).__name__} is in training mode; call .eval() before blade.optimize "
                         "(dropout and batch-norm statistics differ in training)")
    args = model_inputs if isinstance(model_inputs, tuple) else (
        tuple(model_inputs) if isinstance(model_inputs, list) else (model_inputs,))
    compiled = BladeModule(module, config, allow_tracing)
    compiled.compile_variant(args, dict(model_kwargs or {}))
    return compiled
