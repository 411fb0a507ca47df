"""``BladeModule``: the drop-in ``nn.Module`` that ``blade.optimize`` returns.

It takes the same arguments as the original module and returns the same output structure
(diffusers/transformers output classes included, through the exported pytree specs). Each call:

1. flattens the arguments and checks their structure and non-tensor values against the example;
2. binds the dimension symbols from the input sizes and checks the variant's guards;
3. runs the first variant whose guards hold; when none does, compiles one more variant with the
   call's inputs as the example (logged, bounded by ``Config.max_variants``), never silently
   running code compiled for another guard class.

Weights are read from the original module at call time (no copies), so in-place updates of its
parameters are seen. Attributes the wrapper does not have (``config``, ``dtype``...) are looked up
on the original module.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch
import torch.utils._pytree as pytree

from blade.config import Config
from blade.pipeline import CompiledProgram, build_kernels, compile_program, executor_kind
from blade.runtime.reference import ReferenceExecutor
from blade.runtime.shape_program import ShapeProgram
from blade.runtime.triton_executor import KernelExecutor
from blade.symbolic import ShapeError


class GuardError(RuntimeError):
    """A call matches no compiled variant and no more variants may be compiled."""


@dataclass
class _Graph:
    graph: Any
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]


@dataclass
class Variant:
    program: CompiledProgram
    executor: ReferenceExecutor
    constants: list[Any]  # non-tensor leaves of the example call, which export specialised on
    graphs: OrderedDict = field(default_factory=OrderedDict)  # shape signature -> _Graph
    graphs_failed: bool = False
    _guards: Any = None

    def accepts(self, tensors: list[torch.Tensor], constants: list[Any]) -> tuple[dict[str, int] | None, str]:
        if constants != self.constants:
            return None, f"non-tensor arguments {constants} differ from the compiled {self.constants}"
        try:
            values = self.executor.bind(tensors)
        except ShapeError as e:
            return None, str(e)
        if all(self.guard_program.run_named(values)):
            return values, ""
        failed = self.executor.table.guard_failures(values)  # slow path: say which guard failed
        return None, "; ".join(failed[:3])

    @property
    def guard_program(self) -> ShapeProgram:
        """Every range and guard of the variant as one shape program (native when built)."""
        if self._guards is None:
            table = self.executor.table
            conds = []
            for info in table.symbols.values():
                conds.append(sympy.Ge(info.symbol, info.lo))
                if info.hi is not None:
                    conds.append(sympy.Le(info.symbol, info.hi))
            conds += [g.cond for g in table.guards]
            self._guards = ShapeProgram(conds, list(table.symbols))
        return self._guards


def _weight_resolver(module: torch.nn.Module, program: CompiledProgram):
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    ep = program.ep
    table: dict[str, torch.Tensor] = {}
    for name, (kind, target) in program.import_result.weights.items():
        if kind == "param" and target in params:
            table[name] = params[target]
        elif kind == "buffer" and target in buffers:
            table[name] = buffers[target]
        elif target in ep.constants:
            table[name] = ep.constants[target]
        elif target in ep.state_dict:
            table[name] = ep.state_dict[target]
        else:
            raise KeyError(f"weight '{name}' ({kind} {target}) not found in the module")

    def lookup(name: str) -> torch.Tensor:
        return table[name]

    return lookup


class BladeModule(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, config: Config, allow_tracing: bool | None):
        super().__init__()
        self.original = module
        self._config = config
        self._allow_tracing = allow_tracing
        self._variants: list[Variant] = []

    # ---------------------------------------------------------------- compile
    def compile_variant(self, args: tuple, kwargs: dict) -> Variant:
        label = f"{type(self.original).__name__}#{len(self._variants)}"
        program = compile_program(self.original, args, kwargs, self._config, self._allow_tracing, label)
        flat, _ = pytree.tree_flatten((args, kwargs))
        constants = [x for x in flat if not isinstance(x, torch.Tensor)]
        weights = _weight_resolver(self.original, program)
        device = next((x.device for x in flat if isinstance(x, torch.Tensor)), torch.device("cpu"))
        if executor_kind(self._config, device) == "kernels":
            launchers = build_kernels(program, self._config, device)
            executor = KernelExecutor(program.module, weights, launchers, check_shapes=self._config.check_shapes,
                                      conv_algorithm_search=self._config.conv_algorithm_search,
                                      convert_weights_in_place=self._config.convert_weights_in_place)
        else:
            executor = ReferenceExecutor(program.module, weights, check_shapes=self._config.check_shapes)
        variant = Variant(program, executor, constants)
        self._variants.append(variant)
        if self._config.verbose:
            print(program.report.format(), file=sys.stderr, flush=True)
        return variant

    @property
    def variants(self) -> list[Variant]:
        return list(self._variants)

    @property
    def report(self):
        """The compile report of the first variant."""
        return self._variants[0].program.report

    # ---------------------------------------------------------------- call
    def forward(self, *args, **kwargs):
        flat, spec = pytree.tree_flatten((args, kwargs))
        tensors = [x for x in flat if isinstance(x, torch.Tensor)]
        constants = [x for x in flat if not isinstance(x, torch.Tensor)]
        chosen, values, reasons = None, None, []
        for v in self._variants:
            if spec != v.program.import_result.in_spec:
                reasons.append("the arguments' structure differs from the example's "
                               f"({spec} vs {v.program.import_result.in_spec})")
                continue
            values, why = v.accepts(tensors, constants)
            if values is not None:
                chosen = v
                break
            reasons.append(why)
        if chosen is None:
            if len(self._variants) >= self._config.max_variants:
                raise GuardError(
                    f"no compiled variant of {type(self.original).__name__} accepts input shapes "
                    f"{[tuple(t.shape) for t in tensors]}: {'; '.join(reasons)}. "
                    f"Raise Config.max_variants (now {self._config.max_variants}) to compile more.")
            print(f"[blade] compiling variant {len(self._variants)} of {type(self.original).__name__} for "
                  f"input shapes {[tuple(t.shape) for t in tensors]}: {'; '.join(reasons) or 'first call'}",
                  file=sys.stderr, flush=True)
            try:
                chosen = self.compile_variant(args, kwargs)
                values = chosen.executor.bind(tensors)
            except Exception as e:  # noqa: BLE001 - the call still gets a correct (eager) answer
                if self._config.fallback == "strict":
                    raise
                print(f"[blade] ERROR: compiling a variant of {type(self.original).__name__} for input shapes "
                      f"{[tuple(t.shape) for t in tensors]} failed ({type(e).__name__}: {str(e)[:500]}); "
                      "this call runs the original module in eager PyTorch", file=sys.stderr, flush=True)
                return self.original(*args, **kwargs)
        if self._use_graphs(chosen, tensors):
            outs = self._run_graph(chosen, tensors, values)
        else:
            outs = chosen.executor.run(tensors, values)
        ir = chosen.program.import_result
        flat_out = [outs[i] if kind == "tensor" else outs[i].item() if kind == "scalar" else i
                    for kind, i in ir.outputs]
        return pytree.tree_unflatten(flat_out, ir.out_spec)

    # ---------------------------------------------------------------- CUDA graphs
    def _use_graphs(self, variant: Variant, tensors: list[torch.Tensor]) -> bool:
        return (self._config.cuda_graphs and not variant.graphs_failed and isinstance(variant.executor, KernelExecutor)
                and bool(tensors) and all(t.is_cuda for t in tensors)
                and not torch.cuda.is_current_stream_capturing())

    def _run_graph(self, variant: Variant, tensors: list[torch.Tensor], values: dict[str, int]) -> list[torch.Tensor]:
        """One CUDA graph per input-shape signature: captured at the first call, replayed after."""
        key = tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)
        entry = variant.graphs.get(key)
        if entry is None:
            try:
                entry = self._capture(variant, tensors, values)
            except Exception as e:  # noqa: BLE001 - e.g. an eager fallback op that synchronises
                variant.graphs_failed = True
                print(f"[blade] CUDA graph capture failed ({type(e).__name__}: {e}); running without graphs",
                      file=sys.stderr, flush=True)
                return variant.executor.run(tensors, values)
            variant.graphs[key] = entry
            while len(variant.graphs) > self._config.max_cuda_graphs:
                variant.graphs.popitem(last=False)
        else:
            variant.graphs.move_to_end(key)
        for static, t in zip(entry.inputs, tensors):
            static.copy_(t)
        variant.executor.refresh_prepared_weights()
        entry.graph.replay()
        return [o.clone() for o in entry.outputs]

    def _capture(self, variant: Variant, tensors: list[torch.Tensor], values: dict[str, int]) -> _Graph:
        static = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: library handles, prepared weights, workspaces
            variant.executor.run(static, values)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            outputs = variant.executor.run(static, values)
        return _Graph(graph, static, outputs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            original = super().__getattr__("original")
            return getattr(original, name)
