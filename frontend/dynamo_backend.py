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
    import dataclasses

    import blade

    config = Config.current()
    # Dynamo lifts the model's parameters and buffers into graph inputs: their sizes are fixed,
    # so they are compiled static (dynamic weight shapes would only add symbols and guards)
    static = {f"args[{i}]": list(range(x.dim())) for i, x in enumerate(example_inputs)
              if isinstance(x, torch.Tensor) and x.dim() and _is_weight(gm, i, x)}
    if static:
        config = dataclasses.replace(config, static_dims={**static, **config.static_dims})
    floats = _lifted_floats(gm, example_inputs)
    state: dict = {}

    def run(*args):
        tensors = tuple(x if isinstance(x, torch.Tensor) else torch.empty(int(x), 0) for x in args)
        key = tuple(float(args[i]) for i in floats)  # the floats' values now (Dynamo does not guard them)
        if state.get("key") != key:
            module = _IntInputsAsTensors(_with_floats(gm, dict(zip(floats, key))), example_inputs).eval()
            state.update(key=key, compiled=blade.optimize(module, tensors, config=config))
            run.blade_module = state["compiled"]
        out = state["compiled"](*tensors)
        return out if isinstance(out, (tuple, list)) else (out,)

    return run


def _lifted_floats(gm: torch.fx.GraphModule, example_inputs) -> list[int]:
    """Graph inputs that are floats of the model (a LayerNorm's ``eps``) Dynamo lifted into 0-d
    CPU tensors and reads back only with ``.item()``. torch.export cannot trace that (an op
    argument that depends on tensor data), so every transformer under
    ``torch.compile(backend="blade", dynamic=True)`` ran in eager PyTorch."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    return [i for i, (node, x) in enumerate(zip(placeholders, example_inputs))
            if isinstance(x, torch.Tensor) and x.dim() == 0 and x.is_floating_point() and x.device.type == "cpu"
            and node.users and all(u.op == "call_method" and u.target == "item" for u in node.users)]


def _with_floats(gm: torch.fx.GraphModule, values: dict[int, float]) -> torch.fx.GraphModule:
    """A copy of ``gm`` whose ``.item()`` reads of the lifted floats are those floats as constants
    (the placeholders stay, unused, so the signature is the same); ``run`` compiles a new copy
    when a value changes."""
    import copy

    graph = copy.deepcopy(gm.graph)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for i, v in values.items():
        for item in list(placeholders[i].users):
            for user in list(item.users):
                user.args = torch.fx.node.map_arg(user.args, lambda a, it=item, v=v: v if a is it else a)
                user.kwargs = torch.fx.node.map_arg(user.kwargs, lambda a, it=item, v=v: v if a is it else a)
            graph.erase_node(item)
    return torch.fx.GraphModule(gm, graph)


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


def _is_weight(gm: torch.fx.GraphModule, index: int, example) -> bool:
    """Whether graph input ``index`` is a parameter or buffer of the model (Dynamo's source of
    the placeholder names it: ``L['fn']._modules['0']._parameters['weight']``)."""
    if isinstance(example, torch.nn.Parameter):
        return True
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if index >= len(placeholders):
        return False
    arg = placeholders[index].meta.get("grapharg")
    name = getattr(getattr(arg, "source", None), "name", "")
    name = name() if callable(name) else name
    return "._parameters[" in name or "._buffers[" in name
