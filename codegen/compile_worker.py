"""The body of one parallel kernel-compile job. It imports only Triton (not torch, not Blade's
IR), so a freshly spawned worker process starts in a fraction of a second."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path


def import_kernel_module(path: Path):
    """Import a generated kernel module (once per process)."""
    name = f"blade_kernel_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def compile_job(job: tuple) -> tuple[str, float]:
    """``(source path, kernel, signature, constexprs, attrs, options, target, triton cache dir)``."""
    path, kernel, signature, constexprs, attrs, options, target, tcache = job
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    triton.knobs.cache.dir = tcache
    module = import_kernel_module(Path(path))
    t0 = time.perf_counter()
    src = ASTSource(getattr(module, kernel), signature, constexprs=constexprs, attrs=attrs)
    triton.compile(src, target=GPUTarget(*target), options=options)
    return kernel, time.perf_counter() - t0
