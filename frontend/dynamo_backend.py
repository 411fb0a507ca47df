"""``torch.compile(model, backend="blade")``: Blade as a TorchDynamo backend (registered through
the ``torch_dynamo_backends`` entry point in pyproject.toml).

Dynamo hands the backend an FX graph of torch-level calls plus example inputs; Blade exports
that graph with its usual dynamic-shape policy and compiles it like any module, so it lands in the
same tensor dialect. The returned callable is a ``BladeModule``: a new input shape inside the
compiled guard class runs the same program.

Dynamo itself still guards on the shapes it saw. Use ``torch.compile(model, backend="blade",
dynamic=True)`` so that Dynamo does not re-trace per shape; its symbolic sizes arrive as extra
integer inputs, which Blade binds like tensor dims.
"""

from __future__ import annotations

import torch

from blade.config import Config


def blade_backend(gm: torch.fx.GraphModule, example_inputs):
    """Dynamo backend entry. The compile itself runs at the first call, outside Dynamo's own
    tracing (torch.export cannot run nested inside a Dynamo compile)."""
    import blade

    config = Config.current()
    module = _IntInputsAsTensors(gm, example_inputs).eval()
    state: dict = {}

    def run(*args):
        tensors = tuple(x if isinstance(x, torch.Tensor) else torch.empty(int(x), 0) for x in args)
        if "compiled" not in state:
            state["compiled"] = blade.optimize(module, tensors, config=config)
            run.blade_module = state["compiled"]
        out = state["compiled"](*tensors)
        return out if isinstance(out, (tuple, list)) else (out,)

    return run


class _IntInputsAsTensors(torch.nn.Module):
    """Dynamo passes symbolic sizes as Python ints. Blade binds symbols from tensor dims, so
    each int ``n`` travels as an empty tensor of shape ``[n, 0]`` whose first dim is the int."""

    def __init__(self, gm: torch.fx.GraphModule, example_inputs):
        super().__init__()
        self.gm = gm
        self.int_positions = [i for i, x in enumerate(example_inputs) if not isinstance(x, torch.Tensor)]

    def forward(self, *args):
        real = [a.shape[0] if i in self.int_positions else a for i, a in enumerate(args)]
        return self.gm(*real)
