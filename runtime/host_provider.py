"""The ``torch`` library provider: every ``library_call`` of a Program computed with PyTorch ops.

Providers share one type-erased calling convention (``Provider`` below): an op name, its
attributes as plain data (run-time sizes already resolved to ints), the input tensors and the
output tensors to write, placed by the executor (arena or output allocations). A provider with
an ``allocates(op)`` method that says yes for an op is handed ``None`` outputs for it: it then
returns the tensors it computed (checked against the planned shapes and dtypes) and the executor uses them as they are.
PyTorch's ops allocate their results anyway, so the torch provider is such a provider: a copy
into the planned buffer would be one more kernel and one more pass over memory per library call
(329 of them per SD 1.5 UNet step), and the executor leaves those values out of the arena.

The torch provider runs anywhere torch does: on CPU it lets CI run whole Programs, on a GPU it is
the baseline that cuBLASLt / cuDNN / attention providers replace op by op (``gemm_library``,
``conv_library``: GEMMs and convolutions from Blade's C++ runtime). On CUDA it makes each
NHWC convolution's weight channels-last once (in place, or as a kept copy; cuDNN would convert it
on every call otherwise) and lets cuDNN time its algorithms once per
convolution shape (``conv_algorithm_search``).

The semantics are those of the dialect's reference hooks (``compiler/dialects``), restated here
because the runtime imports no compiler module; ``tests/unit/test_program.py`` holds both to the
reference executor.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.utils.weak import WeakIdKeyDictionary


class Provider(Protocol):
    def __call__(self, op: str, attrs: dict[str, Any], inputs: list[torch.Tensor],
                 outputs: list[torch.Tensor]) -> None: ...


class ProviderError(RuntimeError):
    """A provider does not implement an op (or a form of it)."""


_UNARY: dict[str, Callable] = {
    "neg": torch.neg, "exp": torch.exp, "log": torch.log, "log1p": torch.log1p, "expm1": torch.expm1,
    "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "sin": torch.sin, "cos": torch.cos, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "silu": F.silu, "relu": torch.relu, "abs": torch.abs, "erf": torch.erf,
    "reciprocal": torch.reciprocal, "logical_not": torch.logical_not, "cast": lambda x: x,
    "floor": torch.floor, "ceil": torch.ceil, "trunc": torch.trunc, "round": torch.round, "sign": torch.sign,
    "log2": torch.log2, "exp2": torch.exp2, "isnan": torch.isnan, "isinf": torch.isinf,
}
_BINARY: dict[str, Callable] = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "floor_div": lambda a, b: torch.div(a, b, rounding_mode="floor"), "remainder": torch.remainder,
    "fmod": torch.fmod,
    "pow": torch.pow, "maximum": torch.maximum, "minimum": torch.minimum, "eq": torch.eq, "ne": torch.ne,
    "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge, "logical_and": torch.logical_and,
    "logical_or": torch.logical_or,
}


def _reduced(attrs, x) -> list[int]:
    return sorted({d % max(x.dim(), 1) for d in attrs["dims"]})


def _conv(a, x, w, b=None):
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
    nhwc = a.get("layout", "nchw") == "nhwc"
    y = conv(x.movedim(-1, 1) if nhwc else x, w, b, a["stride"], a["padding"], a["dilation"], a["groups"])
    return y.movedim(1, -1) if nhwc else y


def conv_transpose(a, x, w, b=None):
    """``blade.conv_transpose`` (NCHW): ``torch.nn.functional.conv_transpose1d/2d/3d``."""
    conv = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[w.dim() - 2]
    return conv(x, w, b, list(a["stride"]), list(a["padding"]), list(a["output_padding"]), a["groups"],
                list(a["dilation"]))


def _group_norm(a, x, w=None, b=None):
    nhwc = a.get("layout", "nchw") == "nhwc"
    y = F.group_norm(x.movedim(-1, 1) if nhwc else x, a["num_groups"], w, b, a["eps"])
    return y.movedim(1, -1) if nhwc else y


def _upsample(a, x, out):
    if a.get("layout", "nchw") == "nhwc":
        return F.interpolate(x.movedim(-1, 1), size=tuple(out.shape[1:-1]), mode=a["mode"]).movedim(1, -1)
    return F.interpolate(x, size=tuple(out.shape[2:]), mode=a["mode"])


def _index(a, x, *idx):
    slots: list[torch.Tensor | None] = [None] * (max(a["indexed"]) + 1)
    for d, t in zip(a["indexed"], idx):
        slots[d] = t
    return torch.ops.aten.index.Tensor(x, slots)


def _gather_rows(a, table, *cols):
    """``blade.gather_rows`` outside a kernel (a group whose kernel could not be generated): rows of
    ``table`` named by the index columns (each with a trailing size-1 dim)."""
    idx = list(torch.broadcast_tensors(*(c[..., 0] for c in cols)))
    if a["wrap"]:
        idx = [torch.where(c < 0, c + table.shape[j], c) for j, c in enumerate(idx)]
    return table[tuple(idx)]


def _iota(a, out):
    start, step = a["start"], a["step"]
    if not out.dtype.is_floating_point:
        start, step = int(start), int(step)
    return torch.arange(out.shape[0], device=out.device, dtype=out.dtype) * step + start


#: op -> fn(attrs, inputs, outputs) -> result tensor(s) (copied into the outputs by ``torch_provider``)
_OPS: dict[str, Callable] = {
    "gelu": lambda a, i, o: F.gelu(i[0], approximate=a.get("approximate", "none")),
    "where": lambda a, i, o: torch.where(i[0], i[1], i[2]),
    "reduce_sum": lambda a, i, o: torch.sum(i[0], dim=_reduced(a, i[0]), keepdim=bool(a["keepdim"]),
                                            dtype=o[0].dtype),
    "reduce_mean": lambda a, i, o: torch.mean(i[0], dim=_reduced(a, i[0]), keepdim=bool(a["keepdim"]),
                                              dtype=o[0].dtype),
    "reduce_max": lambda a, i, o: torch.amax(i[0], dim=_reduced(a, i[0]), keepdim=bool(a["keepdim"])),
    "reduce_min": lambda a, i, o: torch.amin(i[0], dim=_reduced(a, i[0]), keepdim=bool(a["keepdim"])),
    "argmax": lambda a, i, o: torch.argmax(i[0], dim=_reduced(a, i[0])[0], keepdim=bool(a["keepdim"])),
    "argmin": lambda a, i, o: torch.argmin(i[0], dim=_reduced(a, i[0])[0], keepdim=bool(a["keepdim"])),
    "cumsum": lambda a, i, o: torch.cumsum(i[0], a["dim"], dtype=o[0].dtype),
    "gather": lambda a, i, o: torch.gather(i[0], a["dim"], i[1]),
    "softmax": lambda a, i, o: torch.softmax(i[0], dim=a["dim"]),
    "log_softmax": lambda a, i, o: torch.log_softmax(i[0], dim=a["dim"]),
    "group_norm": lambda a, i, o: _group_norm(a, *i),
    "layer_norm": lambda a, i, o: F.layer_norm(i[0], tuple(i[0].shape[-a["normalized_ndim"]:]),
                                               i[1] if len(i) == 3 else None, i[2] if len(i) == 3 else None, a["eps"]),
    "linear": lambda a, i, o: F.linear(i[0], i[1], i[2] if len(i) == 3 else None),
    "matmul": lambda a, i, o: torch.matmul(i[0], i[1]),
    "conv": lambda a, i, o: _conv(a, *i),
    "conv_transpose": lambda a, i, o: conv_transpose(a, *i),
    "attention": lambda a, i, o: attention(i[0], i[1], i[2], i[3] if len(i) == 4 else None, bool(a["is_causal"]),
                                           a.get("scale")),
    "concat": lambda a, i, o: torch.cat(i, dim=a["dim"]),
    "pad": lambda a, i, o: F.pad(i[0], list(a["pads"]), value=a["value"]),
    "upsample": lambda a, i, o: _upsample(a, i[0], o[0]),
    "embedding": lambda a, i, o: F.embedding(i[1], i[0]),
    "index": lambda a, i, o: _index(a, *i),
    "gather_rows": lambda a, i, o: _gather_rows(a, *i),
    "iota": lambda a, i, o: _iota(a, o[0]),
    "full": lambda a, i, o: torch.full(tuple(o[0].shape), a["value"], dtype=o[0].dtype, device=o[0].device),
    # rank-0 constants and dim values are fills, never host-to-device copies (which a CUDA graph
    # capture refuses from pageable memory); a graph is kept per input shape, which fixes every
    # symbol's value
    "constant": lambda a, i, o: torch.full(tuple(o[0].shape), a["value"], dtype=o[0].dtype, device=o[0].device),
    "dim_value": lambda a, i, o: torch.full(tuple(o[0].shape), a["value"][0], dtype=o[0].dtype, device=o[0].device),
}


#: ops whose results are new tensors whatever the arguments (``cast`` may return its argument)
_FRESH_RESULTS = {"conv", "conv_transpose", "linear", "matmul", "attention", "concat", "group_norm", "layer_norm", "softmax",
                  "log_softmax", "embedding"}
#: ops whose implementation above reads the planned outputs
_READS_OUTPUTS = {"iota", "full", "constant", "dim_value", "upsample", "reduce_sum", "reduce_mean", "cumsum"}
_CUDNN_FLAG_LOCK = threading.Lock()  # cudnn.benchmark is process-wide: set and restored under it


#: the module call this thread is in (``module_call``): an op's shape seen again within one module
#: call is still that shape's first call (a UNet's 32 attentions have 8 shapes)
_CALL = threading.local()
_EPOCHS = itertools.count(1)


@contextlib.contextmanager
def module_call():
    """One call of a compiled module (``BladeModule.forward``, ``ProgramExecutor.run``; nested ones
    count once): what ``_SecondCall`` counts as a call."""
    depth = getattr(_CALL, "depth", 0)
    if depth == 0:
        _CALL.epoch = next(_EPOCHS)
    _CALL.depth = depth + 1
    try:
        yield
    finally:
        _CALL.depth = depth
        if depth == 0:
            _CALL.epoch = None


class _SecondCall:
    """Which call of a key (an op's shapes) this is, for work worth doing only for keys that repeat:
    ``tuned(key, capturing)`` is False on the key's first call and True from its second on, except
    inside a CUDA-graph capture, where it is True only once an earlier call outside the capture
    ran tuned (tuning inside a capture would allocate, time kernels or synchronise in the stream
    being captured, which fails the capture). With ``Config.cuda_graph_after=2`` a shape's second
    call is the capture's warm-up: it tunes, and the capture replays the tuned choice.

    A call is a module call (``module_call``): the same key met again inside the module call that
    first met it is still untuned (an SD 1.5 UNet meets each of its 8 attention shapes 2-6 times
    per call; counting op calls made all but the first of each cuDNN attentions that build a plan
    on a new shape's first call: 0.23 s of its 0.48 s). Outside any module call every op call
    counts as a call."""

    def __init__(self):
        self._calls: dict = {}  # key -> [module call that first met it, ran tuned outside a capture]
        self._lock = threading.Lock()

    def tuned(self, key, capturing: bool) -> bool:
        epoch = getattr(_CALL, "epoch", None)
        with self._lock:
            state = self._calls.get(key)
            if capturing:
                return state is not None and state[1]
            if state is None:
                if len(self._calls) > 100_000:  # bounded: a long run over ever new shapes
                    self._calls.clear()
                self._calls[key] = [epoch, False]
                return False
            if epoch is not None and state[0] == epoch and not state[1]:
                return False  # met again within the module call that first met it
            state[1] = True
            return True


def _capturing(t: torch.Tensor) -> bool:
    return t.is_cuda and torch.cuda.is_current_stream_capturing()


class _FirstCallAttention:
    """Attention backends by how often a shape came: its first call takes flash or memory-efficient
    attention, later calls torch's own choice (``_SecondCall``). On an H200 (torch 2.11) torch picks
    cuDNN's attention for the SD 1.5 UNet, which builds a plan per new shape: 32 attention calls
    cost 0.46 s of a new shape's 0.55 s first call, while flash/efficient only took 0.23 s for the
    whole first call but 6.86 ms per graphs-on step instead of 5.98
    (``benchmarks/first_call_profile.py``). Every backend computes the same attention; only speed
    differs. Process-wide, like cuDNN's plan cache.

    ``torch.nn.attention.sdpa_kernel`` sets process-wide flags: untuned calls hold a lock so two
    threads cannot restore each other's settings wrongly (a later call of another thread may run
    under the narrowed set meanwhile: the same result, another backend)."""

    def __init__(self):
        self._calls = _SecondCall()
        self._lock = threading.Lock()

    def tuned(self, q, k, v, mask) -> bool:
        """Whether this call may take torch's backend choice (see ``_SecondCall``)."""
        key = (tuple(q.shape), tuple(k.shape), tuple(v.shape), q.dtype, q.device,
               None if mask is None else (tuple(mask.shape), mask.dtype))
        return self._calls.tuned(key, _capturing(q))

    def __call__(self, q, k, v, mask, is_causal: bool, scale):
        return self.run(q, k, v, mask, is_causal, scale, not q.is_cuda or self.tuned(q, k, v, mask))

    def run(self, q, k, v, mask, is_causal: bool, scale, tuned: bool):
        """The attention with the call already counted (``tuned``: its shape's first call or not)."""
        if q.is_cuda and not tuned:
            from torch.nn.attention import SDPBackend, sdpa_kernel

            with self._lock, sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, scale=scale)


#: ``F.scaled_dot_product_attention`` as compiled programs call it (``_FirstCallAttention``)
attention = _FirstCallAttention()


class ConvSearch:
    """When cuDNN times its algorithms for a convolution shape (``Config.conv_algorithm_search``):
    from its second call on (``_SecondCall``), not its first. A new input shape's first call then
    takes cuDNN's heuristic pick and costs a run, not a search of every algorithm for every
    convolution (most of a UNet's 1.3-4.5 s first call); a shape that repeats is searched on its
    second call, the CUDA-graph warm-up run, so the captured graph holds the timed picks. Call
    ``benchmark`` under ``_CUDNN_FLAG_LOCK``."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._calls = _SecondCall()

    def benchmark(self, x: torch.Tensor, w: torch.Tensor, attrs: Any) -> bool:
        """The ``cudnn.benchmark`` setting for this convolution call."""
        if not self.enabled:
            return False
        key = (tuple(x.shape), tuple(x.stride()), tuple(w.shape), x.dtype, x.device, attrs)
        return self._calls.tuned(key, _capturing(x))


class TorchProvider:
    """The torch provider (see the module docstring); ``torch_provider`` is the default instance."""

    def __init__(self, conv_algorithm_search: bool = True, convert_weights_in_place: bool = True,
                 gemm_library: str = "torch", conv_library: str = "torch", attention_library: str = "torch"):
        """``gemm_library``: ``"cublaslt"`` computes float16/bfloat16 ``linear`` and ``matmul`` on CUDA
        with cuBLASLt through Blade's C++ runtime (``runtime/cublaslt_gemm.py``), the rest with torch.
        ``convert_weights_in_place``: an NHWC convolution's weight that is a parameter is made
        channels-last in place (``Config.convert_weights_in_place``; values unchanged, no copy, so
        any later update of it, even through ``.data``, is read); False keeps a channels-last copy,
        refreshed when the parameter's version or storage changes. ``conv_library``: ``"cudnn"``
        computes float16/bfloat16 convolutions on CUDA with cuDNN through Blade's C++ runtime
        (``runtime/cudnn_conv.py``), the rest with torch. ``attention_library``: ``"cudnn"`` computes
        float16/bfloat16 attention without mask on CUDA with cuDNN's fused attention through Blade's
        C++ runtime (``runtime/cudnn_attention.py``) from a shape's second call on, the rest with torch."""
        self.conv_algorithm_search = conv_algorithm_search
        self._search = ConvSearch(conv_algorithm_search)
        self.convert_weights_in_place = convert_weights_in_place
        #: channels-last weight copies: weight -> (version, data_ptr, copy), held weakly by the
        #: weight's identity (the process-wide ``torch_provider`` serves every loaded artifact: a
        #: strong reference would keep a dropped model's weights and their copies alive)
        self._cl_weights: WeakIdKeyDictionary = WeakIdKeyDictionary()
        #: iterating a weak dictionary is not atomic: a thread adding a weight while another
        #: refreshes would end the refresh with "dictionary changed size during iteration"
        self._cl_lock = threading.Lock()
        #: tensors an executor keeps across calls (weights cast once): cached like parameters
        self._stable: dict[int, weakref.ref] = {}
        if gemm_library not in ("torch", "cublaslt"):
            raise ValueError(f"gemm_library must be 'torch' or 'cublaslt', not {gemm_library!r}")
        self.gemm_library = gemm_library
        self._gemm = None  # the CublasLtGemm, made on the first CUDA GEMM
        self._gemm_lock = threading.Lock()
        if conv_library not in ("torch", "cudnn"):
            raise ValueError(f"conv_library must be 'torch' or 'cudnn', not {conv_library!r}")
        self.conv_library = conv_library
        self._cudnn = None  # the CudnnConvolution, made on the first CUDA convolution
        if attention_library not in ("torch", "cudnn"):
            raise ValueError(f"attention_library must be 'torch' or 'cudnn', not {attention_library!r}")
        self.attention_library = attention_library
        self._cudnn_attention = None  # the CudnnAttention, made on the first tuned CUDA attention

    def mark_stable(self, t: torch.Tensor) -> None:
        """``t`` keeps its identity across calls and is updated in place (with a version bump):
        a channels-last copy of it may be kept like one of a parameter."""
        self._stable[id(t)] = weakref.ref(t)

    def __call__(self, op: str, attrs: dict[str, Any], inputs: list[torch.Tensor],
                 outputs: list[torch.Tensor | None]) -> list[torch.Tensor] | None:
        if op in _UNARY:
            result = _UNARY[op](inputs[0])
        elif op in _BINARY:
            result = _BINARY[op](inputs[0], inputs[1])
        elif op == "conv" and inputs[0].is_cuda:
            result = self._conv_cuda(attrs, inputs)
        elif op == "attention" and self.attention_library == "cudnn" and inputs[0].is_cuda:
            result = self._attention_cuda(attrs, inputs)
        elif op in ("linear", "matmul") and self.gemm_library == "cublaslt" and inputs[0].is_cuda:
            result = self._cublaslt(op, attrs, inputs, outputs)
        elif op in _OPS:
            result = _OPS[op](attrs, inputs, outputs)
        else:
            raise ProviderError(f"the torch provider does not implement '{op}' (inputs "
                                f"{[tuple(t.shape) for t in inputs]}); add it to runtime/host_provider.py")
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        if any(o is None for o in outputs):
            return results
        for out, r in zip(outputs, results):
            if tuple(r.shape) != tuple(out.shape):
                raise ProviderError(f"torch provider '{op}': computed shape {tuple(r.shape)}, the Program planned "
                                    f"{tuple(out.shape)}")
            out.copy_(r)
        return None

    @staticmethod
    def allocates(op: str) -> bool:
        """Whether this provider returns its own result for ``op`` (all but the ops that read the
        planned output's shape, dtype or device)."""
        return op not in _READS_OUTPUTS

    @staticmethod
    def fresh_results(op: str) -> bool:
        """Whether ``op``'s results are always new tensors, never an argument's memory (the
        executor then skips its aliasing check): the library calls a UNet makes most."""
        return op in _FRESH_RESULTS

    def native_gemm(self):
        """The ``CublasLtGemm`` this provider computes GEMMs with (None: torch computes them, or no
        CUDA GEMM has run yet): the C++ step loop runs its prepared plans itself
        (``runtime/native_loop.py``)."""
        return self._gemm if self.gemm_library == "cublaslt" else None

    def native_concat(self) -> bool:
        """Whether the C++ step loop may run this provider's ``concat`` as copies of rows (it is
        ``torch.cat``: a copy of each input into its slice of the result)."""
        return True

    def native_conv(self):
        """The ``CudnnConvolution`` this provider computes convolutions with (None: torch computes
        them, or no CUDA convolution has run yet): the C++ step loop runs its plans itself."""
        return self._cudnn if self.conv_library == "cudnn" else None

    def native_attention(self):
        """The ``CudnnAttention`` this provider computes attention with (None: torch computes it, or
        none has run yet): the C++ step loop runs its plans itself."""
        return self._cudnn_attention if self.attention_library == "cudnn" else None

    def _attention_cuda(self, a: dict[str, Any], inputs: list[torch.Tensor]) -> torch.Tensor:
        """cuDNN's fused attention from a shape's second call on (``attention.tuned``: the first takes
        torch's plan-free backend), where it serves the call; else torch's."""
        q, k, v = inputs[0], inputs[1], inputs[2]
        mask = inputs[3] if len(inputs) == 4 else None
        tuned = attention.tuned(q, k, v, mask)  # counted once: the torch fallback below is told
        if tuned and mask is None:
            attn = self._native("_cudnn_attention", "attention_library", "cuDNN attention", _cudnn_attention)
            if attn is not None:
                result = attn(a, inputs)
                if result is not None:
                    return result
        return attention.run(q, k, v, mask, bool(a["is_causal"]), a.get("scale"), tuned)

    def _cudnn_or_none(self, a: dict[str, Any], inputs: list[torch.Tensor], search: bool) -> torch.Tensor | None:
        """The convolution through cuDNN from the C++ runtime, or None where it does not serve it
        (layout, dtype, or no cuDNN here: then said once, and torch computes every convolution)."""
        conv = self._native("_cudnn", "conv_library", "cuDNN convolutions", _cudnn_convolution)
        return conv(a, inputs, search) if conv is not None else None

    def _cublaslt(self, op: str, attrs: dict[str, Any], inputs: list[torch.Tensor], outputs) -> torch.Tensor:
        result = self._cublaslt_or_none(op, inputs)
        return result if result is not None else _OPS[op](attrs, inputs, outputs)

    def _cublaslt_or_none(self, op: str, inputs: list[torch.Tensor]) -> torch.Tensor | None:
        """The GEMM through cuBLASLt, or None where it does not serve it (layout, dtype, or no
        cuBLASLt here: then said once, and torch computes every GEMM from then on)."""
        gemm = self._native("_gemm", "gemm_library", "cuBLASLt GEMMs", _cublaslt_gemm)
        return gemm(op, inputs) if gemm is not None else None

    def _native(self, slot: str, setting: str, what: str, create):
        """The C++ runtime's library object kept in ``self.<slot>`` (cuBLASLt GEMMs, cuDNN
        convolutions or attention), made on first use while ``self.<setting>`` asks for it; where it
        cannot be made, said once, and the setting falls back to ``"torch"`` (torch computes those
        calls from then on)."""
        made = getattr(self, slot)
        if made is None and getattr(self, setting) != "torch":
            with self._gemm_lock:
                made = getattr(self, slot)
                if made is None and getattr(self, setting) != "torch":
                    made, why = create()
                    if made is None:
                        warnings.warn(f"Blade: {what} from the C++ runtime are not available ({why}); torch computes "
                                      "them", stacklevel=4)
                        setattr(self, setting, "torch")
                    setattr(self, slot, made)
        return made

    def _conv_cuda(self, a: dict[str, Any], inputs: list[torch.Tensor]) -> torch.Tensor:
        x, w = inputs[0], inputs[1]
        if self.gemm_library == "cublaslt" and _pointwise_nhwc(a, w):
            # a 1x1 convolution over channels-last data is a GEMM over the pixels: x [.., Cin] @ w.T
            result = self._cublaslt_or_none("linear", [x, w.reshape(w.shape[0], w.shape[1]), *inputs[2:]])
            if result is not None:
                return result
        if a.get("layout", "nchw") == "nhwc" and w.dim() == 4:
            w = self._channels_last(w)
        # timed at a shape's second call, then cached (by cuDNN's plan cache, or our plan)
        key = (tuple(a["stride"]), tuple(a["padding"]), tuple(a["dilation"]), a["groups"])
        search = self._search.benchmark(x, w, key)
        if self.conv_library == "cudnn":
            result = self._cudnn_or_none(a, [x, w, *inputs[2:]], search)
            if result is not None:
                return result
        with _CUDNN_FLAG_LOCK:
            saved = torch.backends.cudnn.benchmark
            torch.backends.cudnn.benchmark = search
            try:
                return _conv(a, x, w, *inputs[2:])
            finally:
                torch.backends.cudnn.benchmark = saved

    def _channels_last(self, w: torch.Tensor) -> torch.Tensor:
        if w.is_contiguous(memory_format=torch.channels_last):
            return w
        if self.convert_weights_in_place and isinstance(w, torch.nn.Parameter):
            with torch.no_grad():  # the parameter object stays; its storage is re-laid-out
                w.data = w.data.contiguous(memory_format=torch.channels_last)
            return w
        stable = self._stable.get(id(w))
        if not isinstance(w, torch.nn.Parameter) and (stable is None or stable() is not w):
            return w.contiguous(memory_format=torch.channels_last)  # computed: new data every call
        hit = self._cl_weights.get(w)
        if hit is None or not _same_kind(hit[2], w):  # new, or moved to another dtype, shape or device
            hit = (w._version, w.data_ptr(), w.detach().contiguous(memory_format=torch.channels_last))
            with self._cl_lock:
                self._cl_weights[w] = hit
        elif hit[0] != w._version or hit[1] != w.data_ptr():
            hit = self._refreshed(w, hit[2])
        return hit[2]

    def _refreshed(self, w: torch.Tensor, copy: torch.Tensor):
        with torch.no_grad():
            copy.copy_(w)  # in place: a captured CUDA graph reads this copy's address
        hit = (w._version, w.data_ptr(), copy)
        with self._cl_lock:
            self._cl_weights[w] = hit
        return hit

    def refresh(self) -> None:
        """Copy in-place weight updates into the channels-last copies (before a CUDA graph replay,
        which runs no Python)."""
        with self._cl_lock:
            hits = list(self._cl_weights.items())
        for w, (version, ptr, copy) in hits:
            if (version != w._version or ptr != w.data_ptr()) and _same_kind(copy, w):
                self._refreshed(w, copy)


def _cublaslt_gemm():
    from blade.runtime.cublaslt_gemm import CublasLtGemm

    return CublasLtGemm.create()


def _cudnn_convolution():
    from blade.runtime.cudnn_conv import CudnnConvolution

    return CudnnConvolution.create()


def _cudnn_attention():
    from blade.runtime.cudnn_attention import CudnnAttention

    return CudnnAttention.create()


def _pointwise_nhwc(a: dict[str, Any], w: torch.Tensor) -> bool:
    """Whether a convolution is a 1x1 one over channels-last data (stride 1, no padding, no
    groups): a GEMM of the pixels by the weight."""
    spatial = w.dim() - 2
    return (a.get("layout", "nchw") == "nhwc" and spatial >= 1 and all(s == 1 for s in w.shape[2:])
            and a["groups"] == 1 and list(a["stride"]) == [1] * spatial and list(a["padding"]) == [0] * spatial
            and list(a["dilation"]) == [1] * spatial)


def _same_kind(copy: torch.Tensor, w: torch.Tensor) -> bool:
    """Whether ``copy`` can take ``w``'s values in place (a weight moved to another device keeps
    its Parameter but needs a copy there)."""
    return copy.shape == w.shape and copy.dtype == w.dtype and copy.device == w.device


torch_provider = TorchProvider()
