"""GEMMs of a Program through cuBLASLt from Blade's C++ runtime, not through torch's operators
(``Config(gemm_library="cublaslt")``, opt-in).

A ``linear`` (``x @ w.T + bias``), ``matmul`` or 1x1 channels-last convolution becomes one call
into ``runtime/cpp/cublaslt.cpp``, which keeps the cuBLASLt plan of each problem (descriptors and
the heuristic's algorithm) and enqueues ``cublasLtMatmul`` on the current stream, with the bias
added in cuBLASLt's epilogue. This is the first library provider of the C++ runtime, the kind a
C++ step loop calls without Python. Measured on an H200 (``benchmarks/gemm_host_overhead.py``,
``docs/performance.md`` session 10) it is no cheaper to *issue* than torch's ``F.linear``: 17-21
us per call either way, of which ``cublasLtMatmul`` itself takes 8-10 us and the result's
allocation 4-6 us. So library GEMMs, from Python or C++, cannot meet a 2 ms host bound for the
UNet's 216 GEMMs; generated GEMM kernels launched through the driver can.

Row-major tensors map onto cuBLAS's column-major problem ``D (m x n) = op(A) op(B)`` by computing
the transposed product: for ``out[M, N] = x[M, K] @ w[N, K].T`` cuBLAS computes ``out.T (N x M) =
w (stored K x N, transposed) . x.T (stored K x M)``, and the bias, one value per row of ``out.T``,
is cuBLASLt's bias vector. ``linear_problem`` / ``matmul_problem`` make that description from the
tensors' actual sizes and strides (any leading dims that collapse to one row stride, weights in
either memory order); a layout they cannot describe (rows that do not collapse, overlapping
rows, float32, a CPU tensor) gets ``None`` and the op runs in torch as before.
``tests/unit/test_cublaslt_gemm.py`` checks every description on the CPU by evaluating it the way
cuBLAS reads memory; ``tests/gpu/test_gpu_cublaslt.py`` checks the GPU results against torch's.

The library is the one PyTorch loaded (its path read from ``/proc/self/maps``): one cuBLAS in the
process. Each (device, stream) gets its own workspace (``WORKSPACE_BYTES``), as torch keeps one
per handle and stream, so concurrent streams never share one.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

from blade.runtime.strides import collapsed_stride

#: cudaDataType of the dtypes cuBLASLt serves here (float32 stays with torch: its TF32 setting)
CUDA_DTYPES = {torch.float16: 2, torch.bfloat16: 14}
#: bytes of cuBLASLt workspace per (device, stream); split-K algorithms need some
WORKSPACE_BYTES = 4 << 20


@dataclass(frozen=True)
class GemmProblem:
    """cuBLAS's column-major problem (``runtime/cpp/cublaslt.h``): ``D (m x n) = op(A) op(B)``,
    A stored ``k x m`` when ``transa`` else ``m x k`` with leading dimension ``lda`` (elements),
    likewise B; ``batch`` matrices ``stride_*`` elements apart. cuBLAS's A is always the call's
    second operand (the weight, or ``b`` of ``a @ b``) and its B the first: the row-major result is
    computed as its transpose."""

    dtype: int
    transa: bool
    transb: bool
    m: int
    n: int
    k: int
    lda: int
    ldb: int
    ldd: int
    batch: int = 1
    stride_a: int = 0
    stride_b: int = 0
    stride_d: int = 0


def _as_cublas_operand(t: torch.Tensor, rows: int, cols: int) -> tuple[bool, int] | None:
    """How the last two dims of ``t`` (row-major ``rows x cols``) are read as cuBLAS's operand
    holding their transpose (``cols x rows``): (transposed, leading dimension), or None when the
    matrix is neither row- nor column-major. A row-major matrix is a column-major ``cols x rows``
    one (not transposed); a column-major one is its transpose."""
    rs, cs = t.stride(-2), t.stride(-1)
    if (cs == 1 or cols == 1) and rs >= max(cols, 1) and (rows == 1 or rs > 0):
        return False, max(rs, cols, 1)
    if (rs == 1 or rows == 1) and cs >= max(rows, 1) and (cols == 1 or cs > 0):
        return True, max(cs, rows, 1)
    return None


def linear_problem(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> GemmProblem | None:
    """The cuBLAS problem of ``x @ w.T (+ bias)`` written to a contiguous ``[..., N]`` result, or
    None where these tensors' layouts cannot be described."""
    dtype = CUDA_DTYPES.get(x.dtype)
    if dtype is None or w.dtype != x.dtype or w.dim() != 2 or x.dim() < 1:
        return None
    if bias is not None and (bias.dtype != x.dtype or bias.dim() != 1 or (bias.stride(0) != 1 and bias.numel() > 1)):
        return None
    k, n = x.shape[-1], w.shape[0]
    m = math.prod(x.shape[:-1])
    if w.shape[1] != k or (bias is not None and bias.shape[0] != n) or k == 0:
        return None
    if x.stride(-1) != 1 and k > 1:
        return None
    row = collapsed_stride(x, list(range(x.dim() - 1))) if x.dim() > 1 else 0
    if row is None or (m > 1 and row < k):
        return None
    weight = _as_cublas_operand(w, n, k)  # w (n x k) row-major is cuBLAS's k x n: A = w, op T
    if weight is None:
        return None
    transposed, ldw = weight
    # w row-major [n][k] = column-major k x n stored: op(A) = its transpose (n x k); w
    # column-major [n][k] = column-major n x k stored: op(A) = A
    return GemmProblem(dtype, transa=not transposed, transb=False, m=n, n=m, k=k, lda=ldw, ldb=max(row, k, 1),
                       ldd=max(n, 1))


def matmul_problem(a: torch.Tensor, b: torch.Tensor) -> GemmProblem | None:
    """The cuBLAS problem of ``torch.matmul(a, b)`` written to a contiguous result, for a ``[..., M,
    K] @ [K, N]`` product (rows folded) or a batched ``[*B, M, K] @ [*B, K, N]`` with equal batch
    dims that collapse to one stride each; None otherwise (torch's broadcasting rules are left to
    torch)."""
    dtype = CUDA_DTYPES.get(a.dtype)
    if dtype is None or b.dtype != a.dtype or a.dim() < 2 or b.dim() < 2:
        return None
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.shape[-2] != k or k == 0:
        return None
    if b.dim() == 2:  # rows of a fold into one M: the linear product with w = b.T
        rows = math.prod(a.shape[:-1])
        if a.stride(-1) != 1 and k > 1:
            return None
        row = collapsed_stride(a, list(range(a.dim() - 1)))
        if row is None or (rows > 1 and row < k):
            return None
        right = _as_cublas_operand(b, k, n)  # b row-major k x n = column-major n x k: op(A) = A
        if right is None:
            return None
        transposed, ldb = right
        return GemmProblem(dtype, transa=transposed, transb=False, m=n, n=rows, k=k, lda=ldb, ldb=max(row, k, 1),
                           ldd=max(n, 1))
    if a.shape[:-2] != b.shape[:-2]:
        return None
    batch_dims = list(range(a.dim() - 2))
    batch = math.prod(a.shape[:-2])
    sa, sb = collapsed_stride(a, batch_dims), collapsed_stride(b, batch_dims)
    left, right = _as_cublas_operand(a, m, k), _as_cublas_operand(b, k, n)
    if sa is None or sb is None or left is None or right is None or batch >= 2 ** 31:
        return None
    (ta, lda), (tb, ldb) = left, right
    # out.T (n x m) = b.T (n x k) . a.T (k x m): cuBLAS's A is b, its B is a
    return GemmProblem(dtype, transa=tb, transb=ta, m=n, n=m, k=k, lda=ldb, ldb=lda, ldd=max(n, 1), batch=batch,
                       stride_a=sb, stride_b=sa, stride_d=m * n)


def _alignment(ptr: int) -> int:
    """The largest power of two, at most 256, dividing an address (what cuBLASLt may assume)."""
    return min(256, ptr & -ptr) if ptr else 256


def loaded_library(soname: str) -> str | None:
    """The path of the library ``soname`` (e.g. ``libcublasLt.so``, any version suffix) that this
    process has loaded (PyTorch's), read from ``/proc/self/maps``; None where it has loaded none."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(None, 1)[-1]
                if os.path.basename(path).startswith(soname):
                    return path
    except OSError:
        return None
    return None


def native_library(binding: str, what: str, soname: str, available: str, load=None) -> tuple[Any, str]:
    """(Blade's C++ runtime module, the library's path) where the runtime is built with ``binding``
    (``what`` names it), CUDA is here, PyTorch has loaded ``soname`` (``load()`` first makes it
    load it) and the runtime can open it (its ``available`` function); else (None, why not)."""
    from blade.runtime import shape_eval

    native = shape_eval.load_native()
    if not native or not hasattr(native, binding):
        return None, f"Blade's C++ runtime (runtime/_native*.so) is not built with the {what}"
    if not torch.cuda.is_available():
        return None, "CUDA is not available"
    if load is not None:
        load()
    library = loaded_library(soname)
    if library is None:
        return None, f"PyTorch has not loaded {soname} in this process"
    ok, why = getattr(native, available)(library)
    return (native, library) if ok else (None, why)




class CublasLtGemm:
    """``linear`` and ``matmul`` library calls through the native cuBLASLt GEMM. ``__call__``
    returns the result, or None where the call is not one it serves (the caller computes it with
    torch). Construct with ``CublasLtGemm.create()``, which says why where it cannot be used."""

    def __init__(self, native, library: str):
        self._lt = native.CublasLt(library)
        self._workspaces: dict[tuple[int, int], torch.Tensor] = {}
        #: call layout -> (problem, result shape, [(native plan id, its alignments)]: the last serves) or False
        self._layouts: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.calls = 0  # GEMMs served (tests and reports read it)

    @staticmethod
    def create() -> tuple["CublasLtGemm | None", str]:
        native, library = native_library("CublasLt", "cuBLASLt GEMM", "libcublasLt.so", "cublaslt_available")
        return (CublasLtGemm(native, library), "") if native else (None, library)

    @property
    def plans(self) -> int:
        return self._lt.plans

    def __call__(self, op: str, inputs: list[torch.Tensor]) -> torch.Tensor | None:
        x = inputs[0]
        if not x.is_cuda:
            return None
        # what the layout decides is kept per layout: the mapping, the result's shape and the
        # native plan (so a call is a dictionary lookup, an allocation and one native call)
        key = (op, len(inputs), x.dtype, x.device, x.shape, x.stride(), inputs[1].device, inputs[1].shape,
               inputs[1].stride(), inputs[-1].device)
        hit = self._layouts.get(key)
        if hit is None:
            hit = self._layouts[key] = self._describe(op, inputs)
            if len(self._layouts) > 4096:  # bounded: a long run over ever new shapes
                self._layouts.clear()
        if hit is False:
            return None
        problem, shape, plans = hit
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
        if out.numel() == 0:
            return out
        device = x.device.index
        stream = torch._C._cuda_getCurrentRawStream(device)
        workspace = self._workspace(device, stream)
        a, b = inputs[1].data_ptr(), inputs[0].data_ptr()  # out.T = (second) . (first).T
        bias = inputs[2].data_ptr() if op == "linear" and len(inputs) == 3 else 0
        d, ws = out.data_ptr(), workspace.data_ptr()
        plan = plans[-1][0] if plans else self._prepare(problem, plans, bias, a, b, d, device)
        if not self._lt.run(plan, a, b, d, bias, ws, stream, device):
            # less aligned than the plan assumed: a plan for these alignments (kept, as pointers of
            # this layout may be that unaligned again)
            plan = self._prepare(problem, plans, bias, a, b, d, device)
            if not self._lt.run(plan, a, b, d, bias, ws, stream, device):
                raise RuntimeError("cuBLASLt: a plan made for these pointers refused them (a bug: please report it)")
        self.calls += 1
        return out

    def _describe(self, op: str, inputs: list[torch.Tensor]):
        """(problem, result shape, plans) of a call's layout, or False where this is not served."""
        x = inputs[0]
        if any(t.device != x.device for t in inputs):
            return False
        if op == "linear" and len(inputs) in (2, 3):
            problem = linear_problem(x, inputs[1], inputs[2] if len(inputs) == 3 else None)
            shape = (*x.shape[:-1], inputs[1].shape[0])
        elif op == "matmul" and len(inputs) == 2:
            problem = matmul_problem(x, inputs[1])
            shape = (*x.shape[:-1], inputs[1].shape[-1])
        else:
            return False
        return False if problem is None else (problem, shape, [])

    def _prepare(self, problem: GemmProblem, plans: list, bias: int, a: int, b: int, d: int, device: int) -> int:
        """A plan for these pointers and every earlier one of this layout (alignments only go down:
        a layout gets at most a few plans)."""
        p = problem
        aligns = [_alignment(a), _alignment(b), _alignment(d)]
        if plans:
            aligns = [min(x, y) for x, y in zip(aligns, plans[-1][1])]
        plan = self._lt.prepare(p.dtype, p.transa, p.transb, p.m, p.n, p.k, p.lda, p.stride_a, p.ldb, p.stride_b,
                                p.ldd, p.stride_d, p.batch, bias != 0, WORKSPACE_BYTES, *aligns, device)
        plans.append((plan, aligns))
        return plan

    def _workspace(self, device: int, stream: int) -> torch.Tensor:
        key = (device, stream)
        ws = self._workspaces.get(key)
        if ws is None:
            with self._lock:
                ws = self._workspaces.get(key)
                if ws is None:
                    if len(self._workspaces) >= 16:  # streams come and go: keep a bounded set
                        self._workspaces.clear()
                    ws = self._workspaces[key] = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8,
                                                             device=torch.device("cuda", device))
        return ws
