"""The row-major to cuBLAS mapping of ``runtime/cublaslt_gemm.py``, checked on the CPU: every
``GemmProblem`` it makes for random ``linear`` / ``matmul`` layouts is evaluated the way cuBLAS
reads memory (column-major matrices at the operands' addresses with the stated leading dimensions
and batch strides) and must equal torch's result; layouts it cannot describe must get None. The
GPU side (the same problems through cuBLASLt) is ``tests/gpu/test_gpu_cublaslt.py``."""

import random

import pytest
import torch
import torch.nn.functional as F

import blade
from blade.runtime.cublaslt_gemm import CublasLtGemm, linear_problem, matmul_problem
from blade.runtime.host_provider import TorchProvider
from blade.runtime.native_loop import Shadow


def _read(t: torch.Tensor, rows: int, cols: int, ld: int, batch: int, stride: int) -> torch.Tensor:
    """``batch`` column-major ``rows x cols`` matrices at ``t``'s address, as cuBLAS reads them."""
    return torch.as_strided(t, (batch, rows, cols), (stride, 1, ld), t.storage_offset()).double()


def evaluate(p, inputs, bias=None) -> torch.Tensor:
    """D (batch x m x n, column-major) of problem ``p`` on these tensors."""
    b, a = inputs  # cuBLAS's A is the call's second operand (the weight), its B the first
    A = _read(a, p.k if p.transa else p.m, p.m if p.transa else p.k, p.lda, p.batch, p.stride_a)
    B = _read(b, p.n if p.transb else p.k, p.k if p.transb else p.n, p.ldb, p.batch, p.stride_b)
    D = (A.transpose(1, 2) if p.transa else A) @ (B.transpose(1, 2) if p.transb else B)
    return D + bias.double()[None, :, None] if bias is not None else D


def written(p, expected: torch.Tensor) -> torch.Tensor:
    """What D holds when the contiguous row-major result ``expected`` is the column-major D."""
    out = expected.contiguous().double()
    return torch.as_strided(out, (p.batch, p.m, p.n), (p.stride_d, 1, p.ldd))


def _rows(rng, rows_shape, k):
    mode = rng.choice(["plain", "wide", "offset", "permuted"])
    if mode == "wide":
        return torch.randn(*rows_shape, k + 2)[..., :k].half()
    if mode == "offset":
        return torch.randn(7 + int(torch.tensor(rows_shape).prod()) * k).half()[7:].view(*rows_shape, k)
    if mode == "permuted" and len(rows_shape) >= 2:  # rows that do not collapse: must be refused
        return torch.randn(*reversed(rows_shape), k).half().transpose(0, -2)
    return torch.randn(*rows_shape, k).half()


@pytest.mark.parametrize("seed", range(60))
def test_linear_problems_compute_linear(seed):
    rng = random.Random(seed)
    k, n = rng.choice([1, 3, 16, 77]), rng.choice([1, 2, 33, 64])
    rows_shape = rng.choice([(1,), (5,), (2, 7), (1, 9), (3, 1, 4)])
    x = _rows(rng, rows_shape, k)
    w = torch.randn(n, k).half() if rng.random() < 0.6 else torch.randn(k, n).half().t()
    bias = torch.randn(n).half() if rng.random() < 0.5 else None
    p = linear_problem(x, w, bias)
    # the C++ loop's recording run describes let-go tensors by their Shadow: the same problem
    assert linear_problem(Shadow(x), Shadow(w), None if bias is None else Shadow(bias)) == p
    # independent of the mapping: the rows' element offsets are one arithmetic progression
    starts = torch.as_strided(torch.arange(10 ** 6), x.shape[:-1], x.stride()[:-1]).flatten().tolist()
    rows_collapse = len(starts) < 2 or (starts[1] - starts[0] >= k and
                                        all(s == i * (starts[1] - starts[0]) for i, s in enumerate(starts)))
    assert (p is not None) == rows_collapse, (x.shape, x.stride())
    if p is None:
        return
    ref = F.linear(x.double(), w.double(), None if bias is None else bias.double())
    torch.testing.assert_close(evaluate(p, [x, w], bias), written(p, ref))


@pytest.mark.parametrize("seed", range(60))
def test_matmul_problems_compute_matmul(seed):
    rng = random.Random(500 + seed)
    m, k, n = rng.choice([1, 4, 9]), rng.choice([1, 5, 16]), rng.choice([1, 3, 8])
    form = rng.choice(["2d", "fold", "batched", "heads", "broadcast"])
    if form == "2d":
        a, b = torch.randn(m, k).half(), torch.randn(k, n).half()
    elif form == "fold":
        a, b = torch.randn(2, m, k).half(), torch.randn(n, k).half().t()
    elif form == "batched":
        a, b = torch.randn(3, k, m).half().transpose(1, 2), torch.randn(3, k, n).half()
    elif form == "heads":
        a = torch.randn(2, m, 3, k).half().permute(0, 2, 1, 3)
        b = torch.randn(2, n, 3, k).half().permute(0, 2, 3, 1)
    else:  # torch broadcasts the batch: left to torch
        a, b = torch.randn(4, m, k).half(), torch.randn(1, k, n).half()
    p = matmul_problem(a, b)
    assert matmul_problem(Shadow(a), Shadow(b)) == p  # as the recording run sees let-go tensors
    if p is None:
        assert form in ("heads", "broadcast"), (form, a.stride(), b.stride())
        return
    assert form != "broadcast"
    ref = torch.matmul(a.double(), b.double())
    torch.testing.assert_close(evaluate(p, [a, b]), written(p, ref))


def test_refused_layouts():
    x = torch.randn(4, 8).half()
    assert linear_problem(x.float(), torch.randn(3, 8), None) is None  # float32 stays with torch
    assert linear_problem(x, torch.randn(3, 8).half(), torch.randn(3).half()[::1]) is not None
    assert linear_problem(x, torch.randn(3, 8).half(), torch.randn(6).half()[::2]) is None  # strided bias
    assert linear_problem(x[:, ::2], torch.randn(3, 4).half(), None) is None  # strided features
    assert linear_problem(x.expand(2, 4, 8), torch.randn(3, 8).half(), None) is None  # repeated rows
    assert linear_problem(torch.randn(4, 0).half(), torch.randn(3, 0).half(), None) is None  # k = 0: bias only


def test_unavailable_here_says_why_and_torch_computes():
    gemm, why = CublasLtGemm.create()
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: tests/gpu/test_gpu_cublaslt.py covers it")
    assert gemm is None and why
    provider = TorchProvider(gemm_library="cublaslt")
    x, w, b = torch.randn(2, 3, 8), torch.randn(5, 8), torch.randn(5)
    out = provider("linear", {}, [x, w, b], [None])[0]
    torch.testing.assert_close(out, F.linear(x, w, b))  # CPU tensors: torch's operator
    with pytest.raises(ValueError, match="gemm_library"):
        TorchProvider(gemm_library="cudnn")
    with pytest.raises(ValueError, match="gemm_library"):
        blade.Config(gemm_library="magma")


def test_pointwise_convolution_predicate():
    from blade.runtime.host_provider import _pointwise_nhwc

    base = {"layout": "nhwc", "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1}
    w1, w3 = torch.empty(8, 4, 1, 1), torch.empty(8, 4, 3, 3)
    assert _pointwise_nhwc(base, w1)
    assert not _pointwise_nhwc(base, w3)
    assert not _pointwise_nhwc(base | {"layout": "nchw"}, w1)
    assert not _pointwise_nhwc(base | {"stride": [2, 2]}, w1)
    assert not _pointwise_nhwc(base | {"padding": [1, 1]}, w1)
    assert not _pointwise_nhwc(base | {"groups": 2}, torch.empty(8, 2, 1, 1))
    assert _pointwise_nhwc({"layout": "nhwc", "stride": [1], "padding": [0], "dilation": [1], "groups": 1},
                           torch.empty(8, 4, 1))


@pytest.mark.parametrize("slot,setting", [("_gemm", "gemm_library"), ("_cudnn", "conv_library"),
                                          ("_cudnn_attention", "attention_library")])
def test_native_libraries_are_made_once_or_said_once(slot, setting):
    """``TorchProvider._native``: the C++ runtime's library object is made on first use and kept;
    where it cannot be made the provider warns once, names why, and its setting falls back to torch
    (no second attempt); a provider set to torch never makes one."""
    on = {"gemm_library": "cublaslt", "conv_library": "cudnn", "attention_library": "cudnn"}[setting]
    made = []

    def works():
        made.append(object())
        return made[-1], ""

    provider = TorchProvider(**{setting: on})
    first = provider._native(slot, setting, "the library", works)
    assert first is made[0] and provider._native(slot, setting, "the library", works) is first and len(made) == 1

    provider = TorchProvider(**{setting: on})
    with pytest.warns(UserWarning, match=r"the library from the C\+\+ runtime are not available \(no GPU\)"):
        assert provider._native(slot, setting, "the library", lambda: (None, "no GPU")) is None
    assert getattr(provider, setting) == "torch"
    assert provider._native(slot, setting, "the library", works) is None and len(made) == 1  # not tried again

    assert TorchProvider()._native(slot, setting, "the library", works) is None and len(made) == 1
