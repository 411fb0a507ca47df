"""cuDNN convolutions from Blade's C++ runtime on a GPU (``runtime/cudnn_conv.py``,
``runtime/cpp/cudnn_conv.cpp``): random problems (float16 and bfloat16; channels-last and
channels-first; 1-3 spatial dims; odd sizes, batch 1 and 3, strides, padding, dilation, groups,
with and without bias), each against torch in float32 within the fp16 bar, heuristic and timed
(search) plans; a CUDA-graph capture; the C++ step loop running them; and whole modules through
``Config(conv_library="cudnn")`` against eager."""

import random

import pytest
import torch
import torch.nn.functional as F

import blade
from blade.runtime.cudnn_conv import CudnnConvolution, conv_problem

from tests.gpu.helpers import within_fp16_bar as _within_bar

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def conv():
    c, why = CudnnConvolution.create()
    assert c is not None, f"cuDNN must be usable on the GPU machine: {why}"
    return c


def _case(rng: random.Random):
    spatial = rng.choice([1, 2, 2, 2, 3])
    groups = rng.choice([1, 1, 1, 2, 4])
    c = groups * rng.choice([1, 3, 4, 8, 16])
    k = groups * rng.choice([1, 5, 8, 12])
    n = rng.choice([1, 2, 3])
    kernel = [rng.choice([1, 2, 3, 5]) for _ in range(spatial)]
    stride = [rng.choice([1, 1, 2, 3]) for _ in range(spatial)]
    dilation = [rng.choice([1, 1, 2]) for _ in range(spatial)]
    padding = [rng.choice([0, 1, 2]) for _ in range(spatial)]
    size = [rng.randint(dilation[i] * (kernel[i] - 1) + 1, {1: 40, 2: 23, 3: 9}[spatial]) for i in range(spatial)]
    return n, c, k, groups, size, kernel, stride, padding, dilation


def _tensors(case, dtype, nhwc, bias, seed):
    n, c, k, groups, size, kernel, stride, padding, dilation = case
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(n, c, *size, device="cuda", generator=g)
    w = torch.randn(k, c // groups, *kernel, device="cuda", generator=g) / (c // groups * max(1, sum(kernel))) ** 0.5
    b = torch.randn(k, device="cuda", generator=g) if bias else None
    attrs = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups,
             "layout": "nhwc" if nhwc else "nchw"}
    if nhwc:  # Blade's channels-last convolution: x [N, spatial..., C], the weight channels-last
        xs = x.movedim(1, -1).contiguous().to(dtype)
        ws = w.movedim(1, -1).contiguous().movedim(-1, 1).to(dtype)
    else:
        xs, ws = x.to(dtype), w.to(dtype)
    return x, w, b, xs, ws, (b.to(dtype) if bias else None), attrs


def _torch(x, w, b, attrs):
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
    return fn(x, w, b, attrs["stride"], attrs["padding"], attrs["dilation"], attrs["groups"])


@pytest.mark.parametrize("seed", range(60))
def test_random_convolutions_against_torch(conv, seed):
    rng = random.Random(seed)
    case = _case(rng)
    dtype = rng.choice([torch.float16, torch.bfloat16])
    nhwc, bias, search = rng.random() < 0.7, rng.random() < 0.6, rng.random() < 0.3
    x, w, b, xs, ws, bs, attrs = _tensors(case, dtype, nhwc, bias, seed)
    inputs = [xs, ws] + ([bs] if bias else [])
    assert conv_problem(attrs, *inputs) is not None, (case, attrs)
    got = conv(attrs, inputs, search=search)
    assert got is not None
    ref32 = _torch(x.double(), w.double(), None if b is None else b.double(), attrs).float()
    eager = _torch(x.to(dtype), w.to(dtype), None if b is None else b.to(dtype), attrs)
    if nhwc:
        ref32, eager = ref32.movedim(1, -1), eager.movedim(1, -1)
    assert got.shape == ref32.shape and got.dtype == dtype, (got.shape, ref32.shape)
    _within_bar(got, ref32, eager)


@pytest.mark.parametrize("seed", range(24))
def test_a_channels_first_input_against_torch(conv, graph_conv, seed):
    """A model's NCHW input seen channels-last (the layout pass's permute: a view) is served as it
    lies in memory (``x_channels_first``), by the legacy calls and the graph API alike."""
    rng = random.Random(5000 + seed)
    case = list(_case(rng))
    case[1] = case[3] * rng.choice([1, 3, 4, 5, 8])  # input channels: RGB, latents, odd counts
    dtype = rng.choice([torch.float16, torch.bfloat16])
    bias, search = rng.random() < 0.6, rng.random() < 0.3
    x, w, b, xs, ws, bs, attrs = _tensors(tuple(case), dtype, True, bias, seed)
    xs = x.to(dtype).movedim(1, -1)  # [N, spatial..., C] over channels-first memory
    inputs = [xs, ws] + ([bs] if bias else [])
    problem, _ = conv_problem(attrs, *inputs)
    # one input channel (or one pixel): both orders are the same memory, described as packed
    assert problem.x_channels_first == (not xs.is_contiguous()), (case, xs.stride())
    ref32 = _torch(x.double(), w.double(), None if b is None else b.double(), attrs).float().movedim(1, -1)
    eager = _torch(x.to(dtype), w.to(dtype), None if b is None else b.to(dtype), attrs).movedim(1, -1)
    for lib in (conv, graph_conv):
        got = lib(attrs, inputs, search=search)
        assert got is not None and got.shape == ref32.shape and got.dtype == dtype
        _within_bar(got, ref32, eager)


@pytest.fixture(scope="module")
def graph_conv():
    c, why = CudnnConvolution.create(api="graph")
    assert c is not None, why
    return c


@pytest.mark.parametrize("seed", range(30))
def test_graph_api_against_torch(graph_conv, seed):
    """The random problems above through cuDNN's graph API (where it makes no plan, the legacy
    calls: said by ``api``)."""
    test_random_convolutions_against_torch(graph_conv, 1000 + seed)


@pytest.mark.parametrize("shape", [(2, 320, 64, 64, 320), (1, 4, 31, 45, 320), (3, 640, 17, 9, 1280)])
def test_graph_api_serves_unet_convolutions(graph_conv, shape):
    """A UNet's 3x3 convolutions (fp16, channels-last, with bias) get graph-API plans (the legacy
    calls cost 2-4x torch's host time) and give torch's results."""
    conv = graph_conv
    n, c, h, w_, k = shape
    case = (n, c, k, 1, [h, w_], [3, 3], [1, 1], [1, 1], [1, 1])
    x, w, b, xs, ws, bs, attrs = _tensors(case, torch.float16, True, True, 7)
    got = conv(attrs, [xs, ws, bs])
    assert conv.api(attrs, [xs, ws, bs]).startswith("graph"), conv.api(attrs, [xs, ws, bs])
    ref32 = _torch(x.double(), w.double(), b.double(), attrs).float().movedim(1, -1)
    eager = _torch(x.half(), w.half(), b.half(), attrs).movedim(1, -1)
    _within_bar(got, ref32, eager)


def test_graph_plan_takes_the_legacy_calls_for_an_unaligned_pointer(graph_conv):
    """The graph plan declares 16-byte aligned tensors; the C++ list may hand its run a pointer
    that is not (an offset view): that call takes the legacy calls, with the same result."""
    case = (1, 8, 16, 1, [9, 13], [3, 3], [1, 1], [1, 1], [1, 1])
    x, w, b, xs, ws, bs, attrs = _tensors(case, torch.float16, True, True, 3)
    problem, shape = graph_conv.describe(attrs, [xs, ws, bs])
    plan = graph_conv.plan(problem, True, 0)
    if not graph_conv.native.api(plan).startswith("graph"):
        pytest.skip(f"no graph plan for this problem: {graph_conv.native.api(plan)}")
    flat = torch.empty(xs.numel() + 1, device="cuda", dtype=torch.float16)
    shifted = flat[1:].view(xs.shape)
    shifted.copy_(xs)
    out = torch.empty(shape, device="cuda", dtype=torch.float16)
    wsp = torch.empty(max(graph_conv.workspace_size(plan), 1), device="cuda", dtype=torch.uint8)
    stream = torch.cuda.current_stream().cuda_stream
    graph_conv.native.run(plan, shifted.data_ptr(), ws.data_ptr(), out.data_ptr(), bs.data_ptr(), wsp.data_ptr(),
                          stream, 0)
    assert "through the legacy calls" in graph_conv.native.api(plan)
    expect = _torch(xs.movedim(-1, 1).float(), ws.float(), bs.float(), attrs).movedim(1, -1)
    torch.testing.assert_close(out.float(), expect, rtol=2e-2, atol=2e-2)


def test_refused_layouts_fall_back(conv):
    x = torch.randn(2, 9, 11, 8, device="cuda", dtype=torch.float16)
    w = torch.randn(4, 8, 3, 3, device="cuda", dtype=torch.float16)  # not channels-last
    attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "layout": "nhwc"}
    assert conv(attrs, [x, w]) is None
    assert conv(attrs, [x.float(), w.float().contiguous(memory_format=torch.channels_last)]) is None  # float32: torch's
    assert conv(attrs, [x[:, :, :5], w.contiguous(memory_format=torch.channels_last)]) is None  # not packed
    flat = torch.randn(1 + x.numel(), device="cuda", dtype=torch.float16)
    shifted = flat[1:].view(x.shape)  # 2 bytes past an allocation: the plans assume 16
    assert conv(attrs, [shifted, w.contiguous(memory_format=torch.channels_last)]) is None


def test_capture_in_a_cuda_graph(conv):
    case = (2, 16, 8, 1, [13, 17], [3, 3], [1, 1], [1, 1], [1, 1])
    x, w, b, xs, ws, bs, attrs = _tensors(case, torch.float16, True, True, 0)
    conv(attrs, [xs, ws, bs], search=True)  # timed outside the capture
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        conv(attrs, [xs, ws, bs])
        with torch.cuda.graph(graph):
            out = conv(attrs, [xs, ws, bs], search=True)  # no search inside a capture
    torch.cuda.current_stream().wait_stream(side)
    xs.copy_(torch.randn_like(xs))
    graph.replay()
    torch.cuda.synchronize()
    expect = _torch(xs.movedim(-1, 1).float(), ws.float(), bs.float(), attrs).movedim(1, -1)
    torch.testing.assert_close(out.float(), expect, rtol=2e-2, atol=2e-2)


class _Convs(torch.nn.Module):
    """Strided, dilated, grouped and odd convolutions with norms and activations between."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(5, 16, 3, padding=1)
        self.b = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=4)
        self.c = torch.nn.Conv2d(16, 24, 5, padding=4, dilation=2, bias=False)
        self.d = torch.nn.Conv2d(24, 8, 1)
        self.norm = torch.nn.GroupNorm(4, 16)

    def forward(self, x):
        h = F.silu(self.norm(self.a(x)))
        h = self.b(h) + 1
        return self.d(F.gelu(self.c(h)))


@pytest.mark.parametrize("graphs", [False, True])
def test_module_through_cudnn_against_eager(graphs):
    """``Config(conv_library="cudnn")`` end to end at odd shapes, batch 1 and 3; without graphs a
    size's third call runs its convolutions from the C++ step list."""
    torch.manual_seed(0)
    model = _Convs().cuda().half().eval()
    ref_model = _Convs().cuda().eval()
    ref_model.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
    opt = blade.optimize(model, [torch.randn(2, 5, 24, 24, device="cuda", dtype=torch.float16)],
                         config=blade.Config(executor="program", conv_library="cudnn", cuda_graphs=graphs))
    with torch.no_grad():
        for shape in [(1, 5, 19, 23), (3, 5, 32, 17), (2, 5, 24, 24)]:
            x = torch.randn(*shape, device="cuda")
            ref32 = ref_model(x)
            eager = model(x.half())
            for _ in range(4):
                out = opt(x.half())
                _within_bar(out, ref32, eager)
    runners = [v.executor.runner for v in opt.variants]
    provider = runners[0].providers["torch"]
    assert provider.native_conv() is not None and provider.native_conv().calls > 0
    if not graphs:
        loops = [p.native for r in runners for p in r._call_plans.values() if p.native is not None]
        print([loop.describe() for loop in loops])
        # a, b, c through cuDNN, d (1x1) through cuBLASLt; a convolution whose result is aliased by
        # a Python step's may stay a Python step: at least two of the three from the list
        assert loops and all(loop.native_convs >= 2 and loop.native_gemms >= 1 for loop in loops), \
            [loop.describe() for loop in loops]
        assert sum(r.native_stats["calls"] for r in runners) >= 3
        assert not any(r.native_stats["finished_in_python"] for r in runners)
