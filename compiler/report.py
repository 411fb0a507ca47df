"""What a compile did, for people: stages and their times, ops, symbols, guards, fallbacks."""

from __future__ import annotations

import collections
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from xdsl.dialects.builtin import ModuleOp

from blade.dialects.program import ClusterOp, TorchOp
from blade.ir import entry_function, read_symbol_table, walk_ops
from blade.shape_syntax import format_condition, format_dim


#: a compile stage at least this long is printed when it ends, verbose or not (progress output)
SLOW_STAGE_S = 3.0


@dataclass
class CompileReport:
    model: str
    frontend: str = ""
    config: str = ""
    stages: list[tuple[str, float]] = field(default_factory=list)
    unsupported: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    verbose: bool = False
    module: ModuleOp | None = None

    @contextmanager
    def stage(self, name: str):
        """Time a compile stage. ``verbose`` prints each stage's start and end; otherwise a stage
        that took ``SLOW_STAGE_S`` or more is still said when it ends, so a long compile (a UNet's
        capture takes 10-20 s) shows where it is without flooding short ones."""
        if self.verbose:
            print(f"[blade] {self.model}: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.stages.append((name, dt))
        if self.verbose or dt >= SLOW_STAGE_S:
            print(f"[blade] {self.model}: {name} done in {dt:.2f} s", file=sys.stderr, flush=True)

    @property
    def total_seconds(self) -> float:
        return sum(t for _, t in self.stages)

    def stage_summary(self) -> str:
        """The slow stages in one phrase, e.g. ``capture 8.1 s, compile kernels 0.0 s``: passes
        are summed into one entry."""
        kinds: dict[str, float] = {}
        for name, t in self.stages:
            key = name if name in ("capture (torch.export)", "import", "codegen", "compile kernels") else "passes"
            kinds[key] = kinds.get(key, 0.0) + t
        return ", ".join(f"{n.removesuffix(' (torch.export)')} {t:.1f} s" for n, t in kinds.items())

    def op_counts(self) -> collections.Counter:
        if self.module is None:
            return collections.Counter()
        return collections.Counter(op.name for op in walk_ops(entry_function(self.module))
                                   if op.name not in ("blade.yield", "func.return"))

    def format(self) -> str:
        lines = [f"Blade compile of {self.model} ({self.frontend}; {self.config})"]
        lines.append("  stages: " + ", ".join(f"{n} {t:.2f}s" for n, t in self.stages)
                     + f"  (total {self.total_seconds:.2f}s)")
        if self.module is not None:
            table = read_symbol_table(self.module)
            syms = []
            for info in table.symbols.values():
                rng = f"[{info.lo}, {info.hi if info.hi is not None else 'inf'}]"
                syms.append(f"{info.name} = {info.origin} in {rng}" if info.origin else f"{info.name} in {rng}")
            lines.append(f"  symbols ({len(syms)}): " + ("; ".join(syms) or "none (static shapes)"))
            lines.append(f"  runtime guards ({len(table.guards)}): "
                         + ("; ".join(format_condition(g.cond) for g in table.guards[:6]) or "none")
                         + (" ..." if len(table.guards) > 6 else ""))
            counts = self.op_counts()
            top = ", ".join(f"{n.removeprefix('blade.')} {c}" for n, c in counts.most_common(12))
            lines.append(f"  ops ({sum(counts.values())}): {top}")
            fn = entry_function(self.module)
            clusters = [op for op in fn.body.block.ops if isinstance(op, ClusterOp)]
            fallbacks = [op for op in fn.body.block.ops if isinstance(op, TorchOp)]
            lines.append(f"  clusters: {len(clusters)}, eager fallback ops: {len(fallbacks)}")
            out_dims = [", ".join(format_dim(d) for d in t.shape) for t in fn.function_type.outputs.data]
            lines.append("  output shapes: " + "; ".join(f"[{d}]" for d in out_dims))
        if self.unsupported:
            lines.append(f"  unsupported ops run in eager PyTorch ({len(self.unsupported)}):")
            lines.extend(f"    - {u}" for u in self.unsupported)
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)
