"""``blade.optimize``: compile a module once for every input shape."""

from __future__ import annotations

from typing import Any

import torch

from blade.config import Config


def optimize(module: torch.nn.Module, model_inputs: Any = None, *, allow_tracing: bool | None = None,
             config: Config | None = None, model_kwargs: dict | None = None) -> torch.nn.Module:
    """Compile ``module`` and return a drop-in ``nn.Module`` serving every input shape.

    Args:
        module: the model (``nn.Module``) or a ``torch.jit.ScriptModule``. A module in training
            mode is refused if it has dropout or batch-norm layers (call ``.eval()`` first).
        model_inputs: example positional inputs (a tensor or a tuple). Their values do not matter;
            their structure, dtypes and ranks do. Every tensor dim becomes a symbol unless
            ``Config.static_dims`` pins it. Left out (with ``model_kwargs``), nothing compiles
            now: the first call compiles, its inputs the example (``blade.optimize(pipe.vae)``,
            whose forward is never called: its methods such as ``decode`` are, see
            ``compiler/methods.py``).
        allow_tracing: ``True`` captures with ``torch.jit.trace`` (the TorchScript frontend)
            instead of ``torch.export``.
        config: options; defaults to the innermost ``with blade.Config(...)`` block.
        model_kwargs: example keyword inputs.

    The compile happens now, with the example inputs; later calls whose sizes fall outside the
    compiled guard class, or whose dtypes differ, compile one more variant (see ``BladeModule``).
    A model that cannot be captured (data-dependent control flow, an op torch.export refuses...)
    runs in eager PyTorch with a one-line message saying why; ``Config(fallback="strict")``
    raises instead.
    """
    from blade.module import BladeModule

    config = config or Config.current()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"blade.optimize expects an nn.Module, got {type(module).__name__}")
    if module.training and not isinstance(module, torch.jit.ScriptModule):
        dependent = training_dependent_layers(module)
        if dependent:
            raise ValueError(f"{type(module).__name__} is in training mode and {', '.join(dependent[:3])} "
                             f"{'behave' if len(dependent) > 1 else 'behaves'} differently in training; call "
                             ".eval() before blade.optimize (Blade compiles inference)")
    compiled = BladeModule(module, config, allow_tracing)
    if model_inputs is None and model_kwargs is None:
        return compiled  # compiles at its first call
    args = () if model_inputs is None else model_inputs if isinstance(model_inputs, tuple) else (
        tuple(model_inputs) if isinstance(model_inputs, list) else (model_inputs,))
    compiled.compile_first(args, dict(model_kwargs or {}))
    return compiled


_TRAINING_DEPENDENT = (torch.nn.modules.dropout._DropoutNd, torch.nn.modules.batchnorm._BatchNorm,
                       torch.nn.modules.instancenorm._InstanceNorm, torch.nn.RReLU)


def training_dependent_layers(module: torch.nn.Module) -> list[str]:
    """Submodules whose forward differs between training and eval: dropout with p > 0, batch
    norm (batch statistics, running-stat updates), instance norm with running stats, RReLU.

    A module in training mode without them is compiled as it is, in training mode: torch.export
    captures the forward it really runs, so a functional ``F.dropout(x, p, self.training)`` in
    custom code is captured as the random op it is (and runs in the eager fallback)."""
    found = []
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p == 0:
            continue
        if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm) and not m.track_running_stats:
            continue
        if isinstance(m, _TRAINING_DEPENDENT):
            found.append(f"{type(m).__name__} '{name or type(module).__name__}'")
    return found
