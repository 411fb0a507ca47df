"""CUDA-graph capture helpers of ``BladeModule`` (``compiler/module.py``): one capture at a time
in the process, undoing what a failed capture leaves behind, and telling whether a run
synchronises with the host (which a capture cannot contain)."""

from __future__ import annotations

import sys
import threading
import warnings

import torch


#: one CUDA graph capture at a time in the process (see ``BladeModule._capture_or_report``)
CUDA_CAPTURE_LOCK = threading.Lock()


def end_generator_capture(device: torch.device) -> None:
    """Undo what a failed capture leaves behind. A capture that the CUDA runtime invalidates (a
    library that synchronises by itself, as MAGMA's LU and LDL factorisations do, unseen by torch's
    sync check) ends in ``cudaStreamEndCapture`` failing, and torch then skips the step that takes
    the device's default random generator out of capture mode: every later random op of the
    process fails with "Offset increment outside graph capture". A capture that succeeds runs that
    step, so an (almost) empty one is captured and thrown away; the generator's seed and offset
    are untouched (nothing random runs in it). Called under ``CUDA_CAPTURE_LOCK``."""
    stream = torch.cuda.current_stream(device)
    try:
        with torch.cuda.device(device):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                torch.empty(1, device=device).zero_()
            del graph
    except Exception as e:  # noqa: BLE001 - the original failure is what the caller reports
        torch.cuda.set_stream(stream)
        print(f"[blade] could not reset the CUDA generator after a failed capture ({type(e).__name__}: {e}); "
              "random ops may fail in this process", file=sys.stderr, flush=True)


def synchronizes(run) -> bool:
    """Whether ``run()`` makes a synchronizing CUDA call, by torch's sync debug mode in its "error"
    setting (the "warn" setting reaches Python's warnings only for some call paths: an ATen op
    called as an OpOverload, as the eager fallback calls it, prints to stderr instead). The mode is
    process-wide: a synchronizing call another thread makes during this one run raises there; the
    run happens once per input shape, when its CUDA graph would be captured."""
    with _SYNC_DEBUG_LOCK:  # the setting is process-wide: two checks at once would restore it wrongly
        return _synchronizes_locked(run)


_SYNC_DEBUG_LOCK = threading.Lock()


def _synchronizes_locked(run) -> bool:
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Synchronization debug mode is a prototype feature"
        torch.cuda.set_sync_debug_mode("error")
    try:
        run()
    except RuntimeError as e:
        if "synchronizing" in str(e):
            return True
        raise
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return False
