"""Ahead-of-time compilation of generated kernels to cubins, cached on disk by content hash.

Each plan's source is written to ``<cache>/src/<name>.py`` (the name ends in the hash of the
source) and every variant is compiled with ``triton.compile`` for the target GPU, in parallel
worker processes. Triton's own cache, pointed at ``<cache>/triton``, keys the cubins by source,
constants, options and compiler version, so a second compile of the same model, or a new process,
finds them on disk. The workers are plain subprocesses (``CompileWorkers``; see
``compile_worker.py`` for why not a ``multiprocessing`` pool): they never run the user's script. Compilation never happens at call time: a new input shape only picks a
precompiled variant.

On a machine without a GPU the target is explicit (``GPUTarget("cuda", 90, 32)`` for sm_90), so CI
proves that every kernel compiles. ``load_interpreted`` imports the same source under Triton's CPU
interpreter for tests.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from blade.codegen import compile_worker
from blade.codegen.compile_worker import compile_job, import_kernel_module
from blade.codegen.emit import KernelPlan, Variant

DEFAULT_CACHE = Path(os.path.expanduser("~")) / ".cache" / "blade"


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    return Path(root) if root else DEFAULT_CACHE


def write_source(plan: KernelPlan, root: Path) -> Path:
    path = root / "src" / f"{plan.name}.py"
    if not path.exists() or path.read_text() != plan.source:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(plan.source)
        tmp.replace(path)
    return path


def import_source(path: Path):
    """Import a generated kernel module (once per process)."""
    return import_kernel_module(path)


def _attrs(plan: KernelPlan, variant: Variant) -> dict:
    """Divisibility hints of the aligned variant: pointers, K and row strides are multiples of 16."""
    if not variant.aligned:
        return {}
    sig = plan.signature(variant.kernel)
    return {(i,): [["tt.divisibility", 16]] for i, (name, ty) in enumerate(sig.items())
            if ty.startswith("*") or name == "K" or name.startswith(("s", "rs"))}


def _options(variant: Variant) -> dict:
    """Triton compile options of a variant (``debug`` keeps the bounds-check assertions)."""
    return {"num_warps": variant.num_warps, **({"debug": True} if variant.debug else {})}


class CompileWorkers:
    """``n`` worker subprocesses (``compile_worker.serve``), each fed one job at a time.

    Started with ``python -P`` (the current directory is not put on ``sys.path``) on the worker
    file itself, so neither the user's ``__main__`` nor a module of theirs that happens to share
    a name is ever imported; ``PYTHONPATH`` carries this process's ``sys.path`` so the worker
    finds the same Triton."""

    _BOOT = ("import importlib.util as u, sys; s = u.spec_from_file_location('blade_compile_worker', sys.argv[1]); "
             "m = u.module_from_spec(s); s.loader.exec_module(m); m.serve()")

    def __init__(self, n: int):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self._procs = [subprocess.Popen([sys.executable, "-P", "-c", self._BOOT, compile_worker.__file__],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
                       for _ in range(n)]
        self._idle: queue.Queue = queue.Queue()
        for p in self._procs:
            self._idle.put(p)

    def _call(self, job: tuple):
        proc = self._idle.get()
        try:
            compile_worker.write_frame(proc.stdin, pickle.dumps(job))
            frame = compile_worker.read_frame(proc.stdout)
        finally:
            self._idle.put(proc)
        if frame is None:
            raise RuntimeError(f"a kernel compile worker exited (code {proc.poll()}) while compiling "
                               f"{job[1]} from {job[0]}; its error output is above")
        status, value = pickle.loads(frame)
        if status != "ok":
            raise RuntimeError(f"compiling kernel {job[1]} from {job[0]} failed: {value}")
        return value

    def run(self, jobs: list[tuple]):
        """Compile every job; yields results as they finish (raises the first failure)."""
        with ThreadPoolExecutor(len(self._procs)) as threads:
            futures = [threads.submit(self._call, job) for job in jobs]
            try:
                for f in as_completed(futures):
                    yield f.result()
            finally:
                for f in futures:
                    f.cancel()

    def close(self) -> None:
        for p in self._procs:
            try:
                p.stdin.close()
            except OSError:
                pass
        for p in self._procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            p.stdout.close()

    def __enter__(self) -> CompileWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class CompiledPlan:
    """A plan with its compiled variants (``None`` entries until loaded on a GPU)."""

    plan: KernelPlan
    kernels: dict[int, Any] = field(default_factory=dict)  # variant index -> CompiledKernel


def compile_plans(plans: list[KernelPlan], target: tuple[str, int, int] = ("cuda", 90, 32),
                  root: str | os.PathLike | None = None, jobs: int | None = None, load: bool = False,
                  progress=None) -> list[CompiledPlan]:
    """Compile every variant of every plan for ``target``; identical kernels are compiled once.

    ``load=True`` also returns launchable ``CompiledKernel`` objects (needs the target GPU).
    ``progress(done, total, seconds)`` is called as compiles finish.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    root = cache_dir(root)
    tcache = str(root / "triton")
    jobs_by_key: dict[tuple, tuple] = {}
    for plan in plans:
        path = write_source(plan, root)
        for v in plan.variants:
            sig = plan.signature(v.kernel)
            consts = {k: v.constexprs[k] for k in plan.constexpr_names(v.kernel)}
            key = (str(path), v.kernel, tuple(sorted(consts.items())), v.aligned, v.num_warps, v.debug)
            jobs_by_key[key] = (str(path), v.kernel, sig, consts, _attrs(plan, v), _options(v), tuple(target), tcache)
    todo = list(jobs_by_key.values())
    t0 = time.perf_counter()
    workers = max(1, min(jobs or os.cpu_count() or 1, len(todo) // 2))
    if workers > 1:
        with CompileWorkers(workers) as pool:
            for n, _ in enumerate(pool.run(todo), start=1):
                if progress:
                    progress(n, len(todo), time.perf_counter() - t0)
    else:
        for n, job in enumerate(todo, start=1):
            compile_job(job)
            if progress:
                progress(n, len(todo), time.perf_counter() - t0)
    out = []
    triton.knobs.cache.dir = tcache
    for plan in plans:
        cp = CompiledPlan(plan)
        if load:
            module = import_source(write_source(plan, root))
            for i, v in enumerate(plan.variants):
                consts = {k: v.constexprs[k] for k in plan.constexpr_names(v.kernel)}
                src = ASTSource(getattr(module, v.kernel), plan.signature(v.kernel), constexprs=consts,
                                attrs=_attrs(plan, v))
                cp.kernels[i] = triton.compile(src, target=GPUTarget(*target), options=_options(v))
        out.append(cp)
    return out


def load_interpreted(plan: KernelPlan, root: str | os.PathLike | None = None):
    """The plan's module with its kernels under Triton's CPU interpreter.

    Triton decides at import whether it interprets, so the process must have started with
    ``TRITON_INTERPRET=1`` (the interpreter tests run in such a subprocess)."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("running generated kernels on the CPU needs TRITON_INTERPRET=1 set before "
                           "triton is imported (start the process with it)")
    return import_source(write_source(plan, cache_dir(root)))
