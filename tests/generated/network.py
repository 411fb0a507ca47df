"""The data of a generated network: values with their sizes at each probe, the steps of forward(),
and the network's rendering as Python source (see netgen.py for how networks are drawn).

A network is generated *for* four size assignments ("probes": the compile shape, then three check
shapes). Every value's shape is tracked concretely at each probe (``Dim.vals``), and a dim is
``static`` when it comes from a constant (channels, features).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import torch

NPROBES = 4  # the compile shape, then three check shapes
_EPS = {"float32": 0.0, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8, "int64": 0.0, "bool": 0.0}
FLOATS = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class Dim:
    vals: tuple[int, ...]  # the size at each probe
    static: bool  # derived from constants only (a channel count), not from an input size

    @staticmethod
    def const(n: int, nprobes: int = NPROBES) -> Dim:
        return Dim((n,) * nprobes, True)

    def map(self, fn) -> Dim:
        return Dim(tuple(fn(v) for v in self.vals), self.static)

    def min(self) -> int:
        return min(self.vals)

    def c(self) -> int:
        """The constant value of a static dim."""
        assert self.static
        return self.vals[0]


@dataclass
class Val:
    name: str
    dims: tuple[Dim, ...]
    dtype: str
    exact: bool = False  # bit-identical in any correct implementation (see the module docstring)
    eps: float = 0.0  # the coarsest float precision this value went through

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS


@dataclass
class Input:
    name: str
    template: tuple  # a symbol name or an int per dim ("pyint": the one symbol whose value it is)
    dtype: str  # a torch dtype's name, "pyint" or "pyfloat" (a Python int or float argument)
    high: int = 0  # randint bound for integer inputs


@dataclass
class Step:
    out: str
    lines: list[str]  # statements of forward(); the last assigns ``out``
    decls: list[str]  # statements of __init__ (submodules and parameters)
    uses: list[str]  # value names read


@dataclass
class Network:
    seed: int
    family: str
    inputs: list[Input]
    steps: list[Step]
    outputs: list[str]
    probes: list[dict[str, int]]
    vals: dict[str, Val] = field(default_factory=dict)

    # --------------------------------------------------------------------- rendering
    def source(self) -> str:
        decls = [d for s in self.steps for d in s.decls]
        body = [ln for s in self.steps for ln in s.lines]
        syms = sorted({t for i in self.inputs for t in i.template if isinstance(t, str)})
        lines = ["import torch", "import torch.nn.functional as F", "", "",
                 "class Net(torch.nn.Module):", "    def __init__(self):", "        super().__init__()"]
        lines += [f"        {d}" for d in decls]
        lines += ["", f"    def forward(self, {', '.join(i.name for i in self.inputs)}):"]
        lines += [f"        {b}" for b in body]
        lines += [f"        return ({', '.join(self.outputs)},)", "", ""]
        # sizes of symbols no input uses any more (after shrinking) are accepted and ignored
        lines += [f"def make_inputs({', '.join(syms)}, seed=0, **unused_sizes):",
                  "    g = torch.Generator().manual_seed(seed)"]
        made = []
        for i in self.inputs:
            shape = "(" + ", ".join(str(t) for t in i.template) + ",)"
            if i.dtype in ("pyint", "pyfloat"):  # a Python int or float argument: the probe's value itself
                made.append(str(i.template[0]))
            elif i.dtype == "int64":
                made.append(f"torch.randint(0, {i.high}, {shape}, generator=g)")
            else:
                made.append(f"torch.randn({shape}, generator=g).to(torch.{i.dtype})")
        lines += [f"    return ({', '.join(made)},)", ""]
        return "\n".join(lines)

    def describe(self) -> str:
        shapes = "; ".join(", ".join(f"{k}={v}" for k, v in p.items()) for p in self.probes)
        return f"# generated network, seed {self.seed} ({self.family}); probes: {shapes}\n" + self.source()

    def build(self):
        """(module in eval mode with its seeded weights, make_inputs)."""
        scope: dict = {}
        exec(compile(self.source(), f"<generated seed {self.seed}>", "exec"), scope)  # noqa: S102 - our own source
        torch.manual_seed(self.seed)
        return scope["Net"]().eval(), scope["make_inputs"]

    def tolerance(self, output_index: int) -> float:
        """Relative tolerance of one output (float32: 1e-4; through low precision: 16 ulps)."""
        eps = self.vals[self.outputs[output_index]].eps
        return 1e-4 if eps == 0 else 16 * eps

    # --------------------------------------------------------------------- editing (the shrinker)
    def without_dead_steps(self) -> Network:
        live, steps = set(self.outputs), []
        for s in reversed(self.steps):
            if s.out in live:
                steps.append(s)
                live.update(s.uses)
        inputs = [i for i in self.inputs if i.name in live] or self.inputs[:1]
        return replace(self, steps=steps[::-1], inputs=inputs)

    def renamed_use(self, old: str, new: str) -> Network:
        """Every read of value ``old`` reads ``new`` instead (the step making ``old`` becomes dead)."""
        pat = re.compile(rf"\b{re.escape(old)}\b")
        steps = []
        for s in self.steps:
            if old in s.uses:
                s = Step(s.out, [ln.split(" = ", 1)[0] + " = " + pat.sub(new, ln.split(" = ", 1)[1])
                                 if " = " in ln else pat.sub(new, ln) for ln in s.lines],  # x.add_(v): no " = "
                         s.decls, [new if u == old else u for u in s.uses])
            steps.append(s)
        outputs = [new if o == old else o for o in self.outputs]
        return replace(self, steps=steps, outputs=list(dict.fromkeys(outputs))).without_dead_steps()


