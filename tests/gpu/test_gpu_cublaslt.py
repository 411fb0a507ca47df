"""cuBLASLt GEMMs from Blade's C++ runtime on a GPU (``runtime/cublaslt_gemm.py``,
``runtime/cpp/cublaslt.cpp``): random ``linear`` and ``matmul`` problems in every layout the
mapping describes (odd sizes, rows of a wider tensor, transposed weights, permuted batches,
pointers aligned to 2 bytes only), each against torch in float32 within the fp16 bar; a CUDA-graph
capture; and a whole Program run with ``Config(gemm_library="cublaslt")`` against eager."""

import copy
import random

import pytest
import torch
import torch.nn.functional as F

from blade.runtime.cublaslt_gemm import CublasLtGemm, linear_problem, matmul_problem

from tests.gpu.helpers import within_fp16_bar as _within_bar

pytestmark = pytest.mark.gpu
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def gemm():
    g, why = CublasLtGemm.create()
    assert g is not None, f"cuBLASLt must be usable on the GPU machine: {why}"
    return g


def _x(rng, rows_shape, k, dtype, mode):
    if mode == "wide":  # rows of a wider tensor: leading dimension > k
        return torch.randn(*rows_shape, k + 3, device="cuda", dtype=dtype)[..., :k]
    if mode == "shifted":  # a pointer 2 bytes past an allocation: cuBLASLt must be told
        flat = torch.randn(1 + int(torch.tensor(rows_shape).prod()) * k, device="cuda", dtype=dtype)
        return flat[1:].view(*rows_shape, k)
    return torch.randn(*rows_shape, k, device="cuda", dtype=dtype)


@cuda
@pytest.mark.parametrize("seed", range(40))
def test_random_linear_matches_torch(gemm, seed):
    rng = random.Random(seed)
    dtype = rng.choice([torch.float16, torch.bfloat16])
    k, n = rng.choice([1, 7, 64, 77, 320, 1280]), rng.choice([1, 5, 64, 320, 1281])
    rows_shape = rng.choice([(1,), (3,), (2, 77), (1, 4096 + 3), (3, 13, 5)])
    x = _x(rng, rows_shape, k, dtype, rng.choice(["plain", "wide", "shifted"]))
    w = torch.randn(n, k, device="cuda", dtype=dtype) / k ** 0.5
    if rng.random() < 0.3:  # a weight stored transposed (column-major)
        w = torch.randn(k, n, device="cuda", dtype=dtype).t() / k ** 0.5
    bias = torch.randn(n, device="cuda", dtype=dtype) if rng.random() < 0.6 else None
    assert linear_problem(x, w, bias) is not None, (x.shape, x.stride(), w.stride())
    before = gemm.calls
    got = gemm("linear", [x, w] + ([bias] if bias is not None else []))
    assert got is not None and gemm.calls == before + 1
    ref32 = F.linear(x.float(), w.float(), None if bias is None else bias.float())
    _within_bar(got, ref32, F.linear(x, w, bias))
    assert got.shape == ref32.shape and got.is_contiguous()


@cuda
@pytest.mark.parametrize("seed", range(30))
def test_random_matmul_matches_torch(gemm, seed):
    rng = random.Random(1000 + seed)
    dtype = rng.choice([torch.float16, torch.bfloat16])
    m, k, n = rng.choice([1, 3, 77, 256]), rng.choice([1, 40, 64, 77]), rng.choice([1, 9, 77, 320])
    form = rng.choice(["2d", "fold", "batched", "heads"])
    if form == "2d":
        a, b = torch.randn(m, k, device="cuda", dtype=dtype), torch.randn(k, n, device="cuda", dtype=dtype)
    elif form == "fold":
        a, b = torch.randn(3, m, k, device="cuda", dtype=dtype), torch.randn(n, k, device="cuda", dtype=dtype).t()
    elif form == "batched":
        a = torch.randn(5, m, k, device="cuda", dtype=dtype)
        b = torch.randn(5, n, k, device="cuda", dtype=dtype).transpose(1, 2)
    else:  # attention's q @ k^T: [B, L, H, D] permuted to [B, H, L, D]
        a = torch.randn(2, m, 3, k, device="cuda", dtype=dtype).permute(0, 2, 1, 3)
        b = torch.randn(2, n, 3, k, device="cuda", dtype=dtype).permute(0, 2, 3, 1)
    problem = matmul_problem(a, b)
    if problem is None:  # permuted batches that do not collapse are torch's (and must be said so)
        assert form == "heads", (form, a.stride(), b.stride())
        assert gemm("matmul", [a, b]) is None
        return
    got = gemm("matmul", [a, b])
    ref32 = torch.matmul(a.float(), b.float())
    _within_bar(got, ref32, torch.matmul(a, b))


@cuda
def test_captured_in_a_cuda_graph(gemm):
    x = torch.randn(2, 77, 320, device="cuda", dtype=torch.float16)
    w = torch.randn(640, 320, device="cuda", dtype=torch.float16) / 18
    b = torch.randn(640, device="cuda", dtype=torch.float16)
    gemm("linear", [x, w, b])  # plan made outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = gemm("linear", [x, w, b])
    x.copy_(torch.randn_like(x))
    graph.replay()
    torch.cuda.synchronize()
    _within_bar(out, F.linear(x.float(), w.float(), b.float()), F.linear(x, w, b))


@cuda
def test_program_with_cublaslt_matches_eager():
    import blade

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 33)).cuda().eval()
    x = torch.randn(3, 5, 64, device="cuda")
    opt = blade.optimize(model, (x,), config=blade.Config(enable_fp16=True, executor="program",
                                                          gemm_library="cublaslt", cuda_graphs=False))
    m16 = copy.deepcopy(model).half()
    for shape in [(3, 5, 64), (1, 1, 64), (7, 13, 64)]:
        xi = torch.randn(shape, device="cuda")
        with torch.no_grad():
            _within_bar(opt(xi), model(xi), m16(xi.half()))
    assert opt._torch_provider._gemm is not None and opt._torch_provider._gemm.calls > 0


@cuda
@pytest.mark.parametrize("shape", [(2, 64, 64, 320), (1, 9, 13, 40), (3, 7, 5, 8)])
def test_pointwise_convolution_through_cublaslt(shape):
    """A 1x1 convolution over NHWC data is the provider's GEMM (the SD UNets' proj_in/proj_out)."""
    from blade.runtime.host_provider import TorchProvider

    provider = TorchProvider(gemm_library="cublaslt")
    n, h, w_, c = shape
    conv = torch.nn.Conv2d(c, 2 * c + 1, 1).cuda().half()
    x = torch.randn(n, c, h, w_, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
    attrs = {"layout": "nhwc", "stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1}
    got = provider("conv", attrs, [x.movedim(1, -1), conv.weight, conv.bias], [None])[0]
    assert provider._gemm is not None and provider._gemm.calls == 1
    ref32 = F.conv2d(x.float(), conv.weight.float(), conv.bias.float()).movedim(1, -1)
    _within_bar(got, ref32, F.conv2d(x, conv.weight, conv.bias).movedim(1, -1))
