"""Convolutions of a Program through cuDNN from Blade's C++ runtime, not through torch's operators
(``Config(conv_library="cudnn")``, the default).

A ``conv`` library call becomes one call into ``runtime/cpp/cudnn_conv.cpp``, which keeps the cuDNN
plan of each problem (descriptors, algorithm, workspace size) and enqueues
the convolution (+ bias) on the current stream, without torch's dispatcher: the kind of step the
C++ step loop (``runtime/native_loop.py``) runs without Python. Two ways, per problem:

* cuDNN's graph API (the default): the operation graph conv (+ bias add) and an execution plan
  from cuDNN's heuristic engine order, made once; a call builds one variant pack and executes it,
  as PyTorch's own cuDNN path does;
* the legacy calls (``BLADE_CUDNN_API=legacy``, and where the graph API has no plan for a
  problem): ``cudnnConvolutionForward`` + ``cudnnAddTensor``, the algorithm cuDNN's heuristic pick,
  and a problem met again timed once (``search``: ``cudnnFindConvolutionForwardAlgorithmEx``),
  which is what ``Config.conv_algorithm_search`` asks of torch's path too.

Served: float16 / bfloat16 convolutions with 1-3 spatial dims, any stride, padding, dilation and
groups, where input, weight and result are all packed channels-last (Blade's ``layout="nhwc"``:
``[N, spatial..., C]``, the weight channels-last) or all packed channels-first, or channels-last
with an input packed channels-first (``x_channels_first``: a model's NCHW input seen channels-last
by its first convolution, which cuDNN then reads through its strides instead of torch converting
it first). Anything else
(float32, whose TF32 choice stays torch's; another layout; sizes past cuDNN's int descriptors)
gets ``None`` and torch computes it. ``tests/gpu/test_gpu_cudnn_conv.py`` checks the results
against torch's over many shapes; the problem descriptions are checked on the CPU
(``tests/unit/test_cudnn_conv.py``) and in ctest.

The library is the one PyTorch loaded (its path read from ``/proc/self/maps``): one cuDNN in the
process.

Measured on an H200 (cuDNN 9 with torch 2.11, ``benchmarks/conv_host_overhead.py``,
``docs/results/conv_host_overhead_session14.txt``): host time to issue one convolution, the legacy
calls 42-86 us (session 13), the graph API's prepared plan 10-39 us, torch's ``F.conv2d`` 15-45 us.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from typing import Any

import torch

#: cudnnDataType of the dtypes served here
CUDNN_DTYPES = {torch.float16: 2, torch.bfloat16: 9}
#: the most workspace an algorithm may ask for (bytes); faster algorithms needing more are skipped
WORKSPACE_LIMIT = 32 << 20


@dataclass(frozen=True)
class ConvProblem:
    """One convolution as ``runtime/cpp/cudnn_conv.h`` takes it (sizes in cuDNN's N, C, spatial
    order whatever the memory order)."""

    dtype: int
    nhwc: bool
    n: int
    c: int
    k: int
    groups: int
    input: tuple[int, ...]
    kernel: tuple[int, ...]
    padding: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    #: a channels-last problem whose input is packed channels-first (given to the C++ calls by name)
    x_channels_first: bool = False

    def args(self) -> tuple:
        return (self.dtype, self.nhwc, self.n, self.c, self.k, self.groups, list(self.input), list(self.kernel),
                list(self.padding), list(self.stride), list(self.dilation))


def _dense(t: torch.Tensor, order: list[int]) -> bool:
    """Whether ``t`` is packed with its dims laid out in ``order`` (outermost first); size-1 dims'
    strides do not matter (nothing is addressed through them)."""
    acc = 1
    for d in reversed(order):
        if t.shape[d] != 1 and t.stride(d) != acc:
            return False
        acc *= t.shape[d]
    return True


def conv_problem(attrs: dict[str, Any], x: torch.Tensor, w: torch.Tensor,
                 bias: torch.Tensor | None = None) -> tuple[ConvProblem, tuple[int, ...]] | None:
    """(problem, result shape) of a ``conv`` call with these tensors (``attrs``: the library
    call's ``stride``, ``padding``, ``dilation``, ``groups``, ``layout``), or None where cuDNN is not
    given it here (see the module docstring). The output size is the one PyTorch computes."""
    dtype = CUDNN_DTYPES.get(x.dtype)
    spatial = w.dim() - 2
    if dtype is None or w.dtype != x.dtype or x.dim() != w.dim() or not 1 <= spatial <= 3:
        return None
    if x.device != w.device or (bias is not None and bias.device != x.device):
        return None
    nhwc = attrs.get("layout", "nchw") == "nhwc"
    groups = int(attrs["groups"])
    if nhwc:
        n, c, size = x.shape[0], x.shape[-1], tuple(x.shape[1:-1])
        x_ok = _dense(x, list(range(x.dim())))
        x_channels_first = not x_ok and _dense(x, [0, x.dim() - 1, *range(1, x.dim() - 1)])
        x_ok = x_ok or x_channels_first
        w_ok = _dense(w, [0, *range(2, w.dim()), 1])  # K, spatial..., C/groups in memory
    else:
        n, c, size = x.shape[0], x.shape[1], tuple(x.shape[2:])
        x_ok, x_channels_first = _dense(x, list(range(x.dim()))), False
        w_ok = _dense(w, list(range(w.dim())))
    k = w.shape[0]
    if not (x_ok and w_ok) or groups < 1 or c != w.shape[1] * groups or k % groups:
        return None
    if bias is not None and (bias.dtype != x.dtype or bias.dim() != 1 or bias.shape[0] != k
                             or (bias.stride(0) != 1 and k > 1)):
        return None
    stride, padding, dilation = (tuple(int(v) for v in attrs[name]) for name in ("stride", "padding", "dilation"))
    if not len(stride) == len(padding) == len(dilation) == spatial:
        return None
    out = []
    for i in range(spatial):
        span = dilation[i] * (w.shape[2 + i] - 1) + 1
        if stride[i] < 1 or dilation[i] < 1 or padding[i] < 0 or size[i] + 2 * padding[i] < span:
            return None
        out.append((size[i] + 2 * padding[i] - span) // stride[i] + 1)
    if min(n, c, k) < 1 or max(n * c * math.prod(size), n * k * math.prod(out), w.numel()) >= 2 ** 31:
        return None  # cuDNN's descriptors take int sizes
    problem = ConvProblem(dtype, nhwc, n, c, k, groups, size, tuple(w.shape[2:]), padding, stride, dilation,
                          x_channels_first)
    shape = (n, *out, k) if nhwc else (n, k, *out)
    return problem, shape




class CudnnConvolution:
    """``conv`` library calls through the native cuDNN convolution. ``__call__`` returns the
    result, or None where the call is not one it serves (the caller computes it with torch).
    Construct with ``CudnnConvolution.create()``, which says why where it cannot be used."""

    def __init__(self, native, library: str, api: str = "graph"):
        self._conv = native.CudnnConv(library, api == "graph")
        #: call layout -> (problem, result shape) or False
        self._layouts: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.calls = 0  # convolutions served (tests and reports read it)
        self.searches = 0  # problems timed
        self._searched: set[tuple] = set()  # (problem, bias, device) timed already

    @staticmethod
    def create(api: str | None = None) -> tuple["CudnnConvolution | None", str]:
        """``api``: ``"graph"`` (cuDNN's graph API first, the legacy calls where it has no plan) or
        ``"legacy"``; default: the environment's ``BLADE_CUDNN_API``, else ``"graph"``."""
        from blade.runtime.cublaslt_gemm import native_library

        api = api or os.environ.get("BLADE_CUDNN_API", "graph")
        if api not in ("legacy", "graph"):
            return None, f"BLADE_CUDNN_API must be 'legacy' or 'graph', not {api!r}"
        # PyTorch loads cuDNN on first use
        native, library = native_library("CudnnConv", "cuDNN convolution", "libcudnn.so", "cudnn_available",
                                         load=torch.backends.cudnn.version)
        return (CudnnConvolution(native, library, api), "") if native else (None, library)

    @property
    def native(self):
        """The ``_native.CudnnConv`` (the C++ step list runs its plans)."""
        return self._conv

    def describe(self, attrs: dict[str, Any], inputs: list[torch.Tensor]):
        """(problem, result shape) of a call, or False where it is not served (kept per layout)."""
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) == 3 else None
        key = (x.dtype, x.device, x.shape, x.stride(), w.shape, w.stride(), w.device,
               None if bias is None else (bias.shape, bias.stride(), bias.dtype, bias.device),
               tuple(attrs["stride"]), tuple(attrs["padding"]), tuple(attrs["dilation"]), attrs["groups"],
               attrs.get("layout", "nchw"))
        hit = self._layouts.get(key)
        if hit is None:
            hit = conv_problem(attrs, x, w, bias) if x.is_cuda and len(inputs) in (2, 3) else None
            hit = self._layouts[key] = hit if hit is not None else False
            if len(self._layouts) > 4096:  # bounded: a long run over ever new shapes
                self._layouts.clear()
        return hit

    def plan(self, problem: ConvProblem, bias: bool, device: int) -> int:
        """The id of the problem's current plan (its timed one once a search ran)."""
        return self._conv.prepare(*problem.args(), bias, WORKSPACE_LIMIT, device,
                                  x_channels_first=problem.x_channels_first)

    def workspace_size(self, plan: int) -> int:
        return self._conv.workspace_size(plan)

    def api(self, attrs: dict[str, Any], inputs: list[torch.Tensor]) -> str:
        """How a call's problem runs: ``"graph"`` (cuDNN's graph API) or ``"legacy (why not)"``."""
        hit = self.describe(attrs, inputs)
        if hit is False:
            return "torch (not a problem cuDNN is given here)"
        device = inputs[0].device.index if inputs[0].device.index is not None else torch.cuda.current_device()
        return self._conv.api(self.plan(hit[0], len(inputs) == 3, device))

    def __call__(self, attrs: dict[str, Any], inputs: list[torch.Tensor], search: bool = False) -> torch.Tensor | None:
        """The convolution's result, or None where it is not served. ``search``: time cuDNN's
        algorithms for this problem first (once per problem; never inside a CUDA-graph capture)."""
        hit = self.describe(attrs, inputs)
        if hit is False or any(t.data_ptr() % 16 for t in inputs):  # the plans assume 16-byte alignment
            return None
        problem, shape = hit
        x, w = inputs[0], inputs[1]
        bias = inputs[2] if len(inputs) == 3 else None
        out = torch.empty(shape, dtype=x.dtype, device=x.device)
        device = x.device.index if x.device.index is not None else torch.cuda.current_device()
        stream = torch._C._cuda_getCurrentRawStream(device)
        searched = (problem, bias is not None, device)
        if search and searched not in self._searched and not torch.cuda.is_current_stream_capturing():
            ws = torch.empty(WORKSPACE_LIMIT, dtype=torch.uint8, device=x.device)
            plan = self._conv.prepare(*problem.args(), bias is not None, WORKSPACE_LIMIT, device, True, x.data_ptr(),
                                      w.data_ptr(), out.data_ptr(), ws.data_ptr(), stream,
                                      x_channels_first=problem.x_channels_first)
            del ws
            with self._lock:
                self._searched.add(searched)
            self.searches += 1
        else:
            plan = self.plan(problem, bias is not None, device)
        nbytes = self._conv.workspace_size(plan)
        ws = torch.empty(nbytes, dtype=torch.uint8, device=x.device) if nbytes else None
        self._conv.run(plan, x.data_ptr(), w.data_ptr(), out.data_ptr(), 0 if bias is None else bias.data_ptr(),
                       0 if ws is None else ws.data_ptr(), stream, device)
        self.calls += 1
        return out
