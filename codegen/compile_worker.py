"""A kernel-compile worker process, and the body of one compile job.

``codegen/aot.py`` starts workers as plain subprocesses running ``serve()`` (this file loaded by
path, with ``python -P``), not through ``multiprocessing``: a ``spawn`` pool re-imports the
parent's ``__main__``, which runs the user's whole script again in every worker when it has no
``if __name__ == "__main__":`` guard (and fails outright under ``python -c``, notebooks and the
REPL). A worker imports only the standard library and Triton (not torch, not Blade), so it starts
in a fraction of a second and never sees the user's code.

Protocol, over the worker's stdin and its original stdout: length-prefixed pickles, one job in,
one ``("ok", (kernel, seconds))`` or ``("error", message)`` out, until stdin closes. Anything
Triton prints goes to stderr, so it cannot corrupt the replies.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import time
import traceback
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


def read_frame(stream) -> bytes | None:
    """One length-prefixed frame, or None at end of stream."""
    header = stream.read(8)
    if len(header) < 8:
        return None
    size = int.from_bytes(header, "little")
    data = stream.read(size)
    if len(data) < size:
        return None
    return data


def write_frame(stream, data: bytes) -> None:
    stream.write(len(data).to_bytes(8, "little") + data)
    stream.flush()


def serve() -> None:
    """Compile jobs read from stdin until it closes; replies go to the original stdout."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the replies
    jobs = sys.stdin.buffer
    while (frame := read_frame(jobs)) is not None:
        try:
            reply = ("ok", compile_job(pickle.loads(frame)))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            reply = ("error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        write_frame(replies, pickle.dumps(reply))


if __name__ == "__main__":
    serve()
