"""Attention of a Program through cuDNN's fused attention from Blade's C++ runtime, not through
torch's ``scaled_dot_product_attention`` (``Config(attention_library="cudnn")``, the default).

An ``attention`` library call becomes one call into ``runtime/cpp/cudnn_attention.cpp``, which
keeps the cuDNN plan of each problem (the fused attention operation ``OPERATION_SDPA_FWD`` of
cuDNN 9.13.1 and later, its execution plan from cuDNN's heuristic engine order) and enqueues it on
the current stream without torch's dispatcher: the kind of step the C++ step loop
(``runtime/native_loop.py``) runs without Python.

Served: float16 / bfloat16 ``Q [b, h, s_q, d]``, ``K [b, h, s_kv, d]``, ``V [b, h, s_kv, d_v]``
with any strides whose last is 1 and the others multiples of 8 elements, head dims multiples of
8 up to 256, no mask tensor, no dropout, causal or not (causal: cuDNN's composite graph, see
``runtime/cpp/cudnn_attention.h``); the result is made ``[b, s_q, h, d_v]`` in memory
(seen as ``[b, h, s_q, d_v]``: the layout torch's flash and cuDNN attention return, so the usual
``transpose(1, 2).reshape`` after it is a view). Anything else gets ``None`` and torch computes
it.

A plan costs cuDNN tens of milliseconds to make, so a shape's first call is left to torch (the
provider asks only from a shape's second call, as for torch's own attention choice) and a CUDA-graph
capture uses only plans made before it. The library is the one PyTorch loaded (one cuDNN in the
process). ``tests/gpu/test_gpu_cudnn_attention.py`` checks the results against float32 on the GPU;
``tests/unit/test_cudnn_attention.py`` the problem descriptions on the CPU.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from blade.runtime.cudnn_conv import CUDNN_DTYPES, WORKSPACE_LIMIT

#: the first cuDNN with the fused attention operation (OPERATION_SDPA_FWD), as torch reports versions
MIN_CUDNN = 91301
_MISSING = object()


@dataclass(frozen=True)
class AttentionProblem:
    """One attention as ``runtime/cpp/cudnn_attention.h`` takes it."""

    dtype: int
    sizes: tuple[int, ...]  # b, h_q, h_k, s_q, s_kv, d, d_v
    strides: tuple[tuple[int, ...], ...]  # of Q, K, V, O over [b, h, s, d]
    causal: bool = False

    def args(self) -> tuple:
        return self.dtype, list(self.sizes), [list(s) for s in self.strides], self.causal


def result_strides(b: int, h: int, s: int, d_v: int) -> tuple[int, int, int, int]:
    """Strides over ``[b, h, s, d_v]`` of a result laid out ``[b, s, h, d_v]`` in memory."""
    return (s * h * d_v, d_v, h * d_v, 1)


def _strides(t) -> tuple[int, ...] | None:
    """``t``'s strides, a size-1 dim's (which addresses nothing) set to the span of the dims after
    it (from the last dim back, so every stride cuDNN sees follows the alignment rule); None where a
    dim of size > 1 has stride 0 (an ``expand``: not a layout cuDNN's attention is checked on)."""
    strides = list(t.stride())
    span = 1
    for k in range(len(strides) - 1, -1, -1):
        n = t.shape[k]
        if n == 1:
            strides[k] = span
        elif strides[k] == 0:
            return None
        span = max(span, strides[k] * n)
    return tuple(strides)


def attention_problem(attrs: dict[str, Any], q, k, v) -> tuple[AttentionProblem, tuple, tuple, float] | None:
    """(problem, result shape, result strides, scale) of an attention call, or None where this path
    does not serve it (then torch computes it). ``q``, ``k``, ``v``: tensors or ``Shadow``s."""
    if attrs.get("dropout_p", 0.0):
        return None
    if any(len(t.shape) != 4 for t in (q, k, v)) or not (q.dtype == k.dtype == v.dtype) or q.dtype not in CUDNN_DTYPES:
        return None
    if not (q.is_cuda and k.is_cuda and v.is_cuda) or not (q.device == k.device == v.device):
        return None
    b, h, s_q, d = q.shape
    if tuple(k.shape[:2]) != (b, h) or k.shape[3] != d or tuple(v.shape[:3]) != (b, h, k.shape[2]):
        return None
    s_kv, d_v = k.shape[2], v.shape[3]
    given = [_strides(t) for t in (q, k, v)]
    if any(st is None for st in given):
        return None
    strides = tuple(given) + (result_strides(b, h, s_q, d_v),)
    if any(s[3] != 1 or any(x < 0 or x % 8 for x in s[:3]) for s in strides) or d % 8 or d_v % 8 or max(d, d_v) > 256:
        return None
    if min(b, h, s_q, s_kv, d, d_v) < 1:
        return None
    scale = attrs.get("scale")
    scale = float(1.0 / math.sqrt(d) if scale is None else scale)
    problem = AttentionProblem(CUDNN_DTYPES[q.dtype], (b, h, h, s_q, s_kv, d, d_v), strides,
                               bool(attrs.get("is_causal")))
    return problem, (b, h, s_q, d_v), strides[3], scale


class CudnnAttention:
    """``attention`` library calls through the native cuDNN attention. ``__call__`` returns the
    result, or None where the call is not one it serves. Construct with ``CudnnAttention.create()``,
    which says why where it cannot be used."""

    def __init__(self, native, library: str):
        self._attention = native.CudnnAttention(library)
        self._layouts: dict[tuple, Any] = {}  # call layout -> attention_problem's answer or False
        self._plans: dict[tuple, int | None] = {}  # (problem, scale, device) -> plan id, None: cuDNN made none
        self.refused: dict[str, str] = {}  # problem description -> why cuDNN made no plan (reports, tests)
        self._lock = threading.Lock()
        self.calls = 0  # attentions served (tests and reports read it)

    @staticmethod
    def create() -> tuple["CudnnAttention | None", str]:
        from blade.runtime.cublaslt_gemm import native_library

        native, library = native_library("CudnnAttention", "cuDNN attention", "libcudnn.so", "cudnn_available",
                                         load=torch.backends.cudnn.version)
        if native is None:
            return None, library
        version = torch.backends.cudnn.version() or 0
        if version < MIN_CUDNN:
            return None, f"cuDNN {version} has no fused attention operation (it needs {MIN_CUDNN} or later)"
        try:
            return CudnnAttention(native, library), ""
        except RuntimeError as e:  # no graph API in this cuDNN
            return None, str(e)

    @property
    def native(self):
        """The ``_native.CudnnAttention`` (the C++ step list runs its plans)."""
        return self._attention

    def describe(self, attrs: dict[str, Any], inputs: list) -> tuple | bool:
        """``attention_problem``'s answer for a call, or False where it is not served (kept per layout)."""
        if len(inputs) != 3:  # a mask
            return False
        q, k, v = inputs
        key = tuple((t.dtype, t.device, tuple(t.shape), tuple(t.stride())) for t in inputs) + (
            bool(attrs.get("is_causal")), attrs.get("scale"), attrs.get("dropout_p", 0.0))
        hit = self._layouts.get(key)
        if hit is None:
            hit = attention_problem(attrs, q, k, v)
            hit = self._layouts[key] = hit if hit is not None else False
            if len(self._layouts) > 4096:  # bounded: a long run over ever new shapes
                self._layouts.clear()
        return hit

    def plan(self, problem: AttentionProblem, scale: float, device: int, make: bool = True) -> int | None:
        """The id of the problem's plan, made where ``make`` and not made yet; None where cuDNN makes
        none for it (said once in ``refused``) or it is not made and ``make`` is False."""
        key = (problem, scale, device)
        plan = self._plans.get(key, _MISSING)
        if plan is not _MISSING:
            return plan
        if not make:
            return None
        try:
            plan = self._attention.prepare(*problem.args(), scale, WORKSPACE_LIMIT, device)
        except (RuntimeError, ValueError) as e:
            plan = None
            if not self.refused:  # said once; every refusal is kept in ``refused``
                warnings.warn(f"Blade: cuDNN made no attention plan, torch computes such calls ({e}; later "
                              "refusals are listed in the provider's native_attention().refused)", stacklevel=2)
            self.refused[str(problem)] = str(e)
        with self._lock:
            self._plans[key] = plan
            if len(self._plans) > 4096:
                self._plans.clear()
        return plan

    def workspace_size(self, plan: int) -> int:
        return self._attention.workspace_size(plan)

    def __call__(self, attrs: dict[str, Any], inputs: list[torch.Tensor], make: bool = True) -> torch.Tensor | None:
        """The attention's result, or None where it is not served. ``make``: a plan not made yet may
        be made (never inside a CUDA-graph capture)."""
        hit = self.describe(attrs, inputs)
        if hit is False or any(t.data_ptr() % 16 for t in inputs):
            return None
        problem, shape, strides, scale = hit
        q = inputs[0]
        device = q.device.index if q.device.index is not None else torch.cuda.current_device()
        plan = self.plan(problem, scale, device, make and not torch.cuda.is_current_stream_capturing())
        if plan is None:
            return None
        b, h, s_q, d_v = shape
        out = torch.empty((b, s_q, h, d_v), dtype=q.dtype, device=q.device).transpose(1, 2)
        assert tuple(out.stride()) == strides
        nbytes = self._attention.workspace_size(plan)
        ws = torch.empty(nbytes, dtype=torch.uint8, device=q.device) if nbytes else None
        self._attention.run(plan, q.data_ptr(), inputs[1].data_ptr(), inputs[2].data_ptr(), out.data_ptr(),
                            0 if ws is None else ws.data_ptr(), torch._C._cuda_getCurrentRawStream(device), device)
        self.calls += 1
        return out
