"""A compiled variant of a ``BladeModule``: one guard class's program, the executor that runs it,
the call signature it serves (``Variant.accepts``: structure, dtypes, non-tensor values, then its
guards over the sizes), the size carriers of the int arguments it takes as sizes (and the 0-dim
inputs of the float arguments it takes as values), and the CUDA
graphs kept for its shapes (``_Graph``). ``compiler/module.py`` picks, compiles and runs them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import sympy
import torch

from blade.dialects.data_movement import WeightOp
from blade.executors.reference import ReferenceExecutor
from blade.ir import code_key
from blade.pipeline import CompiledProgram
from blade.runtime.call_signature import CallSignature, value_plan, with_scalar_inputs
from blade.runtime.state_objects import spec_has_objects
from blade.shape_program import ShapeProgram
from blade.symbolic import ShapeError


@dataclass(eq=False)  # compared by identity
class _Graph:
    graph: Any
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    owner: Any = None  # weakref to the Variant whose ``graphs`` holds it (no reference cycle)
    key: Any = None    # its input signature there
    #: (weight, data_ptr at capture) of every weight the program reads: a graph reads addresses,
    #: so a weight whose ``.data`` was replaced since (``model.half()``, PEFT's safe merge) must
    #: not be replayed
    weights: list = field(default_factory=list)

    def __post_init__(self):
        self._tensors = [w for w, _ in self.weights]
        self._ptrs = [ptr for _, ptr in self.weights]

    def weights_moved(self) -> bool:
        """Whether a weight's storage moved since the capture (one pass in C over the weights: an
        SD 1.5 UNet reads 686, checked before every replay)."""
        return list(map(torch.Tensor.data_ptr, self._tensors)) != self._ptrs


@dataclass
class Variant:
    program: CompiledProgram
    executor: ReferenceExecutor
    signature: CallSignature  # what the example call looked like, apart from its sizes
    graphs: OrderedDict = field(default_factory=OrderedDict)  # shape signature -> _Graph
    graphs_failed: bool = False
    graph_lock: threading.Lock = field(default_factory=threading.Lock)  # one replay of the static buffers at a time
    _guards: Any = None
    _rng: bool | None = None
    _code_key: str | None = None
    device: Any = None  # the torch.device it runs on
    _state: bool | None = None
    #: the dtype of the 0-dim inputs holding the float arguments it takes as values
    value_dtype: Any = None
    _values: tuple | None = None
    #: compiled for a call with a zero-size dimension (an empty batch): it does not count against
    #: ``Config.max_variants`` (such a call would otherwise take a slot the real shapes need)
    empty_call: bool = False

    @property
    def takes_state_objects(self) -> bool:
        """Whether its calls pass objects the model updates in place and returns (a key/value
        cache: ``runtime/state_objects.py``), as its capture saw."""
        if self._state is None:
            self._state = (bool(getattr(self.program.ep, "blade_state_in_place", False))
                           and spec_has_objects(self.signature.spec))
        return self._state

    @property
    def size_inputs(self) -> tuple:
        """Where the size carriers of the int arguments it takes as sizes go among its inputs."""
        return self.program.import_result.size_inputs

    @property
    def value_inputs(self) -> tuple:
        """Where the 0-dim inputs of the float arguments it takes as values go among its inputs."""
        if self._values is None:
            self._values = value_plan(self.signature.leaves, self.signature.valued)
        return self._values

    def inputs(self, tensors: list[torch.Tensor], signature: CallSignature) -> list[torch.Tensor]:
        """The program's inputs for a call it accepts: its tensors, a 0-dim tensor per float
        argument taken as a value and a size carrier per int argument taken as a size
        (``runtime/call_signature.py``)."""
        if not self.size_inputs and not self.signature.valued:
            return tensors
        return with_scalar_inputs(tensors, signature.constants, self.value_inputs, self.value_dtype,
                                  self.size_inputs, self.device if self.device is not None else torch.device("cpu"))

    def accepts(self, tensors: list[torch.Tensor], signature: CallSignature) -> tuple[dict[str, int] | None, str]:
        """The symbol values of a call this variant serves, or ``(None, why not)``; ``tensors`` are
        the call's (``inputs`` adds the size carriers)."""
        why = signature.difference(self.signature)
        if why:
            return None, why
        try:
            values = self.executor.bind(self.inputs(tensors, signature))
        except ShapeError as e:
            return None, str(e)
        if all(self.guard_program.run_named(values)):
            return values, ""
        failed = self.executor.table.guard_failures(values)  # slow path: say which guard failed
        return None, "; ".join(failed[:3])

    @property
    def code_key(self) -> str:
        """``blade.ir.code_key`` of the program (equal keys share compiled code), printed once
        when first compared: a large module takes a second or two to print."""
        if self._code_key is None:
            self._code_key = code_key(self.program.module)
        return self._code_key

    @property
    def uses_rng(self) -> bool:
        """Whether the program draws random numbers (dropout in training, ``randn_like``...). Such
        programs run without CUDA graphs: a graph replays the generator offsets it captured only
        through torch's own bookkeeping, and a capture that fails midway leaves the CUDA generator
        in capture mode ("Offset increment outside graph capture" on every later random op)."""
        if self._rng is None:
            self._rng = _draws_random_numbers(getattr(self.program, "ep", None))
        return self._rng

    @property
    def guard_program(self) -> ShapeProgram:
        """Every range and guard of the variant as one shape program (native when built)."""
        if self._guards is None:
            table = self.executor.table
            conds = []
            for info in table.symbols.values():
                # a plain integer symbol of the same name: to sympy the table's (positive) symbol
                # is >= 1 already, so ``s0 >= 1`` folded to True and a size-0 dim reached a
                # program whose size algebra assumed 1 or more (var of an empty tensor: -0.0)
                s = sympy.Symbol(info.symbol.name, integer=True)
                conds.append(sympy.Ge(s, info.lo))
                if info.hi is not None:
                    conds.append(sympy.Le(s, info.hi))
            conds += [g.cond for g in table.guards]
            self._guards = ShapeProgram(conds, list(table.symbols))
        return self._guards


def _draws_random_numbers(ep) -> bool:
    if ep is None:  # no captured graph to read: assume it may
        return True
    for gm in ep.graph_module.modules():
        if isinstance(gm, torch.fx.GraphModule):
            for n in gm.graph.nodes:
                t = n.target
                if (n.op == "call_function" and isinstance(t, torch._ops.OpOverload)
                        and torch.Tag.nondeterministic_seeded in t.tags and not _dropout_off(n)):
                    return True
    return False


def _dropout_off(node: torch.fx.Node) -> bool:
    """Whether a node of an op tagged random draws nothing: attention and dropout ops carry the tag
    for their dropout, which a ``dropout_p`` (or ``p``) of 0 or ``train=False`` switches off. Every
    attention call of an inference model is such a node; reading them as random kept every
    transformer and UNet off CUDA graphs."""
    schema = node.target._schema
    names = [a.name for a in schema.arguments]

    def arg(name: str):
        if name in node.kwargs:
            return node.kwargs[name]
        i = names.index(name)
        if i < len(node.args):
            return node.args[i]
        default = schema.arguments[i].default_value if schema.arguments[i].has_default_value() else None
        return default

    if "dropout_p" in names:
        return arg("dropout_p") == 0
    if "p" in names and "train" in names:
        return arg("p") == 0 or arg("train") is False
    return False


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
        if getattr(table[name], "fake_mode", None) is not None:  # never serve a traced placeholder
            raise RuntimeError(f"weight '{name}' ({kind} {target}) of the module is a FakeTensor: "
                               "the module was left mid-capture by another tracer")

    def lookup(name: str) -> torch.Tensor:
        return table[name]

    return lookup


def _program_weights(variant: Variant) -> list[torch.Tensor]:
    """The weight tensors (the user's parameters and buffers) the variant's program reads."""
    names = {op.p("name") for op in variant.program.module.walk() if isinstance(op, WeightOp)}
    return [variant.executor.weights(n) for n in sorted(names)]


def compiled_programs(variants) -> int:
    """How many programs ``variants`` compiled, as ``Config.max_variants`` counts them: variants
    sharing code count once; those made for an empty batch (``Variant.empty_call``) not at all."""
    return len({id(v.executor.code) for v in variants if not v.empty_call})
