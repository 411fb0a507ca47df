"""Blade: a dynamic-shape inference compiler for PyTorch.

    import blade
    cfg = blade.Config(enable_fp16=True)
    with cfg, torch.no_grad():
        unet = blade.optimize(unet, model_inputs=(x, t, ctx))

See ``blade.api`` for ``optimize`` and ``blade.config`` for every option.
"""

from blade.config import Config

__version__ = "0.1.0"


def optimize(module, model_inputs=None, allow_tracing=None, config=None, model_kwargs=None):
    """Compile ``module`` once for every input shape; returns a drop-in ``nn.Module``.

    See ``blade.api.optimize`` for the arguments.
    """
    from blade.api import optimize as _optimize

    return _optimize(module, model_inputs, allow_tracing=allow_tracing, config=config,
                     model_kwargs=model_kwargs)


blade_optimize = optimize


def save(module, path, target=None):
    """Write an optimized module's compiled variants to the directory ``path`` (weights stay the
    user's). See ``blade.artifact.save``."""
    from blade.artifact import save as _save

    return _save(module, path, target)


def load(path, module, expect=None):
    """A drop-in module serving the artifact at ``path`` with ``module``'s weights, in any process
    and without compiling. See ``blade.artifact.load``."""
    from blade.artifact import load as _load

    return _load(path, module, expect)


# torch.compile(model, backend="blade") finds the backend through the ``torch_dynamo_backends``
# entry point declared in pyproject.toml; importing blade does not import torch.

__all__ = ["Config", "optimize", "blade_optimize", "save", "load", "__version__"]
