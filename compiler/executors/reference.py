"""The reference executor: runs a Blade tensor-level module op by op with PyTorch.

It is the semantic oracle of the project (every pass and every generated kernel is tested
against it) and the execution path for anything later stages do not compile: ``blade.torch_op``
fallbacks and, until kernels exist for a cluster, the cluster itself.

For each call it binds the symbols from the input sizes (``blade.symbolic.bind_symbols``),
evaluates every result type's dims to concrete sizes, and calls each op's ``reference`` hook.
Values are dropped after their last use, so peak memory follows the program's liveness.
With ``check_shapes=True`` every computed tensor is checked against its symbolic type, which
makes the executor a test of the symbolic shapes as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from xdsl.dialects import func
from xdsl.dialects.builtin import ModuleOp
from xdsl.ir import Block, SSAValue

from blade.dialects.base import ExecEnv, TensorOp
from blade.dialects.kernel import FusedOp
from blade.dialects.program import ClusterOp, TorchOp, YieldOp
from blade.frontend.eager_results import bind_data_dependent, data_dependent_names
from blade.dialects.types import TensorType
from blade.ir import entry_function, input_names, read_symbol_table
from blade.shape_syntax import format_shape
from blade.symbolic import ShapeError, bind_symbols, evaluate


class ExecutionError(RuntimeError):
    """An op failed or produced a tensor that contradicts its symbolic type."""


class ReferenceExecutor:
    def __init__(self, module: ModuleOp, weights: Callable[[str], torch.Tensor], check_shapes: bool = False):
        self.module = module
        self.fn = entry_function(module)
        self.table = read_symbol_table(module)
        self.weights = weights
        self.check_shapes = check_shapes
        self.names = input_names(self.fn)
        self.input_dims = [(n, a.type.shape) for n, a in zip(self.names, self.fn.body.block.args)]
        self._last_use = {id(b): _last_uses(b) for b in _blocks(self.fn.body.block)}
        #: symbols read from an eager op's results at run time (nonzero, unique...): eager_results.py
        self.data_dependent = data_dependent_names(self.table)
        #: what identifies the compiled code: executors made by ``twin`` share it, and count as one
        #: compiled variant (``Config.max_variants``)
        self.code: object = self

    def twin(self, module: ModuleOp, weights: Callable[[str], torch.Tensor]) -> "ReferenceExecutor":
        """An executor for ``module``, a program identical to this one's but for its guards and
        symbol ranges (see ``KernelExecutor.twin``)."""
        twin = type(self)(module, weights, self.check_shapes)
        twin.code = self.code
        return twin

    def bind(self, inputs: Sequence[torch.Tensor]) -> dict[str, int]:
        if len(inputs) != len(self.input_dims):
            raise ShapeError(f"expected {len(self.input_dims)} tensor inputs ({', '.join(self.names)}), "
                             f"got {len(inputs)}")
        values = bind_symbols(self.input_dims, [tuple(t.shape) for t in inputs])
        for name in self.data_dependent:  # no value until the op that produces it has run
            values.setdefault(name, 0)
        return values

    def run(self, inputs: Sequence[torch.Tensor], symbols: dict[str, int] | None = None) -> list[torch.Tensor]:
        symbols = self.bind(inputs) if symbols is None else symbols
        device = inputs[0].device if inputs else torch.device("cpu")
        env: dict[SSAValue, torch.Tensor] = {}
        for arg, t in zip(self.fn.body.block.args, inputs):
            expect = arg.type.dtype
            env[arg] = t if t.dtype == expect else t.to(expect)
        return self._run_block(self.fn.body.block, env, symbols, device)

    def _run_block(self, block: Block, env: dict, symbols: dict[str, int], device) -> list[torch.Tensor]:
        last_use = self._last_use[id(block)]
        for i, op in enumerate(block.ops):
            if isinstance(op, (func.ReturnOp, YieldOp)):
                return [env[v] for v in op.operands]
            if isinstance(op, ClusterOp):
                inner = dict(zip(op.body.block.args, (env[v] for v in op.inputs)))
                outs = self._run_block(op.body.block, inner, symbols, device)
            elif isinstance(op, FusedOp):
                outs = self.run_fused(op, [env[v] for v in op.inputs], symbols, device)
            elif isinstance(op, TensorOp):
                outs = self._run_op(op, [env[v] for v in op.operands], symbols, device)
            else:
                raise ExecutionError(f"the reference executor cannot run {op.name}")
            for r, t in zip(op.results, outs):
                env[r] = t
            for v in last_use.get(i, ()):
                env.pop(v, None)
        raise ExecutionError("block has no terminator")

    def run_fused(self, op: FusedOp, args: list[torch.Tensor], symbols: dict[str, int], device) -> list[torch.Tensor]:
        """A fusion group, by its member ops (subclasses launch the generated kernel instead)."""
        inner = dict(zip(op.body.block.args, args))
        return self._run_block(op.body.block, inner, symbols, device)

    def _run_op(self, op: TensorOp, args: list[torch.Tensor], symbols, device) -> list[torch.Tensor]:
        types = [r.type for r in op.results]
        assert all(isinstance(t, TensorType) for t in types)
        binds = isinstance(op, TorchOp) and self.data_dependent
        shapes = [tuple(evaluate(d, symbols) for d in t.shape) for t in types]
        env = ExecEnv(shapes, [t.dtype if _is_real(t) else None for t in types], device, symbols, self.weights)
        try:
            out = op.reference(args, env)
        except Exception as e:  # noqa: BLE001 - re-raised naming the op and its shapes
            ins = ", ".join(f"{tuple(a.shape)}:{str(a.dtype).removeprefix('torch.')}" for a in args)
            raise ExecutionError(f"{op.name} failed on inputs [{ins}] (expected result shapes "
                                 f"{shapes}): {type(e).__name__}: {e}") from e
        outs = out if isinstance(out, list) else [out]
        if binds:  # data-dependent sizes: their symbols take the values the eager op produced
            bind_data_dependent(types, outs, symbols, self.data_dependent)
            if "binds" in op.properties:
                symbols[op.properties["binds"].data] = int(outs[0].item())
            shapes = [tuple(evaluate(d, symbols) for d in t.shape) for t in types]
        if self.check_shapes:
            for t, shape, ty in zip(outs, shapes, types):
                if tuple(t.shape) != shape or (_is_real(ty) and t.dtype != ty.dtype):
                    raise ExecutionError(
                        f"{op.name} produced {tuple(t.shape)}:{t.dtype}, but its type "
                        f"{format_shape(ty.shape)} evaluates to {shape}:{ty.dtype if _is_real(ty) else '?'} "
                        f"with {symbols}")
        return outs


def _is_real(t: TensorType) -> bool:
    try:
        t.dtype
        return True
    except TypeError:
        return False


def _blocks(block: Block):
    yield block
    for op in block.ops:
        for region in op.regions:
            for b in region.blocks:
                yield from _blocks(b)


def _last_uses(block: Block) -> dict[int, list[SSAValue]]:
    """op index -> values of this block whose last use (in this block) is that op."""
    last: dict[SSAValue, int] = {}
    for i, op in enumerate(block.ops):
        for v in op.operands:
            last[v] = i
    by_op: dict[int, list[SSAValue]] = {}
    for v, i in last.items():
        by_op.setdefault(i, []).append(v)
    return by_op
