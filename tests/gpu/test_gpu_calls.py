"""GPU tests (skipped without CUDA) of call patterns through the kernel executor: threads sharing
CUDA graphs and compiling a variant, keyword calls, dtype variants."""

import threading

import pytest
import torch
import torch.nn.functional as F

import blade

pytestmark = pytest.mark.gpu
DEV = "cuda"


class Block(torch.nn.Module):
    def __init__(self, c=32, g=8):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.norm = torch.nn.GroupNorm(g, c)

    def forward(self, x, scale=None):
        h = F.silu(self.norm(self.conv(x))) + x
        if x.shape[2] % 2:  # a size branch: odd heights compile a second variant
            h = h * 0.5
        return h


def test_threads_share_cuda_graphs_and_compile_once(capfd):
    model = Block().to(DEV).eval()
    opt = blade.optimize(model, (torch.randn(2, 32, 16, 16, device=DEV),))
    capfd.readouterr()
    shapes = [(2, 32, 16, 16), (1, 32, 17, 9), (3, 32, 16, 12), (2, 32, 15, 15)] * 2
    xs = [torch.randn(*s, device=DEV) for s in shapes]
    results, errors = {}, []
    barrier = threading.Barrier(len(xs))

    def call(i):
        barrier.wait()
        try:
            outs = [opt(xs[i]) for _ in range(5)]  # replays of one graph from several threads
            # this thread's stream only: a device-wide synchronize while another thread captures
            # a CUDA graph is an error of CUDA's (and invalidates that capture)
            torch.cuda.current_stream().synchronize()
            results[i] = outs
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    with torch.no_grad():
        for i, x in enumerate(xs):
            ref = model(x)
            for out in results[i]:
                torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-2)
    assert capfd.readouterr().err.count("compiling variant") == 1
    assert all(type(p) is torch.nn.Parameter for p in model.parameters())


def test_keyword_call_and_dtype_variant_on_gpu(capfd):
    model = Block().to(DEV).eval()
    opt = blade.optimize(model, (torch.randn(2, 32, 8, 8, device=DEV),))
    capfd.readouterr()
    x = torch.randn(1, 32, 10, 6, device=DEV)
    with torch.no_grad():
        ref = model(x)
    torch.testing.assert_close(opt(x=x), ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(opt(x, scale=None), ref, rtol=1e-2, atol=1e-2)
    assert "compiling variant" not in capfd.readouterr().err
    model16 = Block().to(DEV).half().eval()
    opt16 = blade.optimize(model16, (torch.randn(2, 32, 8, 8, device=DEV, dtype=torch.float16),))
    x32 = torch.randn(1, 32, 8, 8, device=DEV)
    with pytest.raises(RuntimeError):  # eager refuses float32 into float16 weights; so does Blade
        opt16(x32)


class Cholesky(torch.nn.Module):
    """An eager fallback with linalg's info check (which may synchronise)."""

    def forward(self, a):
        spd = a @ a.mT + torch.eye(a.shape[-1], device=a.device)
        return torch.linalg.cholesky(spd) * 2


class LuFactor(torch.nn.Module):
    """An eager fallback whose library (MAGMA) synchronises by itself, unseen by torch's sync check:
    its capture is invalidated by CUDA and fails at the end."""

    def forward(self, a):
        lu, pivots = torch.linalg.lu_factor(a + 3 * torch.eye(a.shape[-1], device=a.device))
        return lu * 2, pivots


class Select(torch.nn.Module):
    """A data-dependent output size (nonzero inside)."""

    def forward(self, x):
        return torch.masked_select(x, x > 0) * 2


@pytest.mark.parametrize("model, make", [(Cholesky, lambda n: torch.randn(2, n, n, device=DEV)),
                                         (LuFactor, lambda n: torch.randn(2, n, n, device=DEV)),
                                         (Select, lambda n: torch.randn(3, n, device=DEV))])
def test_programs_that_synchronize_leave_random_numbers_working(model, make):
    """A capture that fails midway left the CUDA generator in capture mode, and every later random
    op of the process failed ("Offset increment outside graph capture"): the GPU OpInfo run lost
    hundreds of ops to it (session 6: after lu, lu_factor and ldl_factor). Such programs answer
    right, with or without a graph, and random numbers still work after them."""
    m = model()
    opt = blade.optimize(m, (make(5),))
    for n in (5, 7, 5):
        x = make(n)
        torch.testing.assert_close(opt(x), m(x))
        assert torch.randn(8, device=DEV).isfinite().all()  # raised after a failed capture
    if model is Select:  # data-dependent sizes: never captured
        assert all(not v.graphs for v in opt.variants)


class AttentionBlock(torch.nn.Module):
    def __init__(self, d=64, heads=4):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.heads = heads

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return x + F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)


def test_attention_programs_run_in_cuda_graphs():
    """Attention ops carry torch's "random" tag for their dropout; with dropout_p=0 they draw
    nothing. Reading the tag alone kept every transformer and the UNet off CUDA graphs (session 6:
    SD 1.5 UNet 62 ms per step instead of 6)."""
    m = AttentionBlock().to(DEV).half().eval()
    x = torch.randn(2, 77, 64, device=DEV, dtype=torch.float16)
    opt = blade.optimize(m, (x,))
    with torch.no_grad():
        for n in (77, 77, 19, 19, 77):
            y = torch.randn(2, n, 64, device=DEV, dtype=torch.float16)
            torch.testing.assert_close(opt(y), m(y), atol=2e-2, rtol=2e-2)
    assert not opt.variants[0].uses_rng
    assert len(opt.variants[0].graphs) == 2


def test_graph_pool_stays_within_its_bounds():
    """50 calls over 30 shapes (issue 9): a shape's first call captures nothing, a repeated one is
    captured, and the graphs kept never exceed the count and byte bounds; every answer is right."""
    model = Block().to(DEV).eval()
    cap = 256 << 20  # a small graph's private pool is a 20 MiB segment or two
    opt = blade.optimize(model, (torch.randn(2, 32, 16, 16, device=DEV),),
                         config=blade.Config(max_cuda_graphs=4, max_cuda_graph_bytes=cap))
    gen = torch.Generator().manual_seed(0)
    shapes = [(int(torch.randint(1, 4, (1,), generator=gen)), 32, int(torch.randint(4, 40, (1,), generator=gen)) * 2,
               int(torch.randint(4, 40, (1,), generator=gen))) for _ in range(30)]
    calls = shapes + shapes[:20]  # 20 shapes come back once
    pool = opt._graph_pool
    for s in calls:
        x = torch.randn(*s, device=DEV)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), model(x), rtol=1e-2, atol=1e-2)
        assert len(pool) <= 4 and pool.bytes <= cap
        assert sum(len(v.graphs) for v in opt.variants) == len(pool)
        for graph, nbytes in pool._graphs.values():  # measured, not just the static inputs
            assert nbytes >= sum(t.nbytes for t in graph.inputs + graph.outputs), nbytes
    assert pool.captures >= 10 and pool.evictions >= 6  # the repeated shapes were captured, old ones evicted


def test_other_frontends_on_the_gpu():
    """torch.compile(backend="blade") and a traced TorchScript module, fp16 on CUDA through
    generated kernels, at shapes other than the first (batch 1 and odd sizes)."""
    torch._dynamo.reset()
    model = Block().to(DEV).half().eval()
    compiled = torch.compile(model, backend="blade")
    traced = torch.jit.trace(model, (torch.randn(2, 32, 16, 16, device=DEV, dtype=torch.float16),))
    opt = blade.optimize(traced, (torch.randn(2, 32, 16, 16, device=DEV, dtype=torch.float16),))
    assert opt.report.frontend == "torchscript"
    with torch.no_grad():
        for shape in [(2, 32, 16, 16), (1, 32, 10, 14), (3, 32, 12, 22)]:  # even heights: traced branch
            x = torch.randn(*shape, device=DEV, dtype=torch.float16)
            ref = model(x)
            torch.testing.assert_close(compiled(x), ref, rtol=2e-2, atol=2e-2)
            torch.testing.assert_close(opt(x), ref, rtol=2e-2, atol=2e-2)
    assert opt.eager_calls == 0
    torch._dynamo.reset()


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_weight_updates_reach_cuda_graph_replays(executor, capfd):
    """After a shape's graph is captured: an update in place through ``.data`` (PEFT's default LoRA
    merge) is read by the replay (same storage), and a weight whose ``.data`` is replaced (new
    storage, PEFT's safe merge) makes the module drop its graphs instead of replaying stale
    addresses; both answers match eager."""
    torch.manual_seed(0)
    m = Block().cuda().half().eval()
    opt = blade.optimize(m, (torch.randn(2, 32, 8, 8, device="cuda", dtype=torch.half),),
                         config=blade.Config(executor=executor))
    x = torch.randn(2, 32, 8, 8, device="cuda", dtype=torch.half)

    def check():
        with torch.no_grad():
            torch.testing.assert_close(opt(x), m(x), rtol=2e-2, atol=2e-2)

    for _ in range(3):  # first call without a graph, second captures, third replays
        check()
    assert opt.variants[0].graphs
    with torch.no_grad():
        m.conv.weight.data += 0.25
    check()
    assert opt.variants[0].graphs  # the same graph, replayed
    m.conv.weight.data = m.conv.weight.data * -1  # new storage
    check()
    assert "graphs are dropped" in capfd.readouterr().err
    check()
    check()  # captured again, then replayed
    assert opt.variants[0].graphs and opt.eager_calls == 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_generated_networks_under_cuda_autocast(dtype):
    """Calls under ``torch.autocast("cuda")`` through the CUDA default (Program executor, C++ step
    list, cuBLASLt / cuDNN, CUDA graphs from the second call): eager autocast's dtypes, and the
    bar of ``tests/unit/test_autocast.py`` against the float32 model, a transposed convolution
    included (``blade.conv_transpose``)."""
    from tests.unit.test_autocast import check_generated_under_autocast

    check_generated_under_autocast(range(60, 72), DEV, dtype, calls=2)

    up = torch.nn.Sequential(torch.nn.ConvTranspose2d(8, 16, 4, stride=2, padding=1), torch.nn.GroupNorm(4, 16),
                             torch.nn.SiLU()).to(DEV).eval()
    with torch.autocast("cuda", dtype=dtype):
        opt = blade.optimize(up, (torch.randn(2, 8, 9, 7, device=DEV),))
    for shape in [(2, 8, 9, 7), (1, 8, 16, 16), (3, 8, 5, 11)] * 2:
        x = torch.randn(*shape, device=DEV)
        with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
            got, want = opt(x), up(x)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got.float(), want.float(), rtol=3e-2, atol=3e-2)
    assert not opt.report.unsupported and opt.eager_calls == 0


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_int_timesteps_as_sizes_in_cuda_graphs(executor):
    """A denoising loop with Python int timesteps, twice (the second pass replays CUDA graphs):
    the variant taking the timestep as a size serves every step; the size carrier is never copied
    into a graph's static inputs (it holds one element for any value)."""
    from blade.runtime.call_signature import is_size_carrier
    from tests.unit.test_int_arguments import AsTensorLikeDiffusers

    torch.manual_seed(0)
    model = AsTensorLikeDiffusers().to(DEV).eval()
    x = torch.randn(2, 8, device=DEV)
    opt = blade.optimize(model, (x, 999), config=blade.Config(executor=executor, cuda_graph_after=1))
    for _ in range(2):
        for t in range(999, -1, -111):
            with torch.no_grad():
                torch.testing.assert_close(opt(x, t), model(x, t), atol=1e-4, rtol=1e-4)
    assert len(opt.variants) == 2 and opt.eager_calls == 0
    graphs = list(opt.variants[1].graphs.values())
    assert graphs and all(is_size_carrier(g.inputs[1]) for g in graphs)


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_float_timesteps_as_values_in_cuda_graphs(executor):
    """A sampler's float timesteps (and a ControlNet-like float scale), twice over: the variant
    taking each float as a 0-dim input serves every value, and a replayed CUDA graph reads the
    call's value (copied into the graph's static input), never the captured one."""
    from tests.unit.test_float_arguments import ControlNetLike, TimestepLikeDiffusers

    torch.manual_seed(0)
    model = TimestepLikeDiffusers().to(DEV).eval()
    x = torch.randn(2, 8, device=DEV)
    opt = blade.optimize(model, (x, 999.0), config=blade.Config(executor=executor, cuda_graph_after=1))
    for _ in range(2):
        for t in [999.0, 880.5, 761.25, 0.5, 999.0]:
            with torch.no_grad():
                torch.testing.assert_close(opt(x, t), model(x, t), atol=1e-4, rtol=1e-4)
    assert len(opt.variants) == 2 and opt.eager_calls == 0
    assert opt.variants[1].signature.valued and opt.variants[1].graphs

    net = ControlNetLike().to(DEV).eval()
    y = torch.randn(2, 3, 8, device=DEV)
    opt = blade.optimize(net, (y, 1.0), config=blade.Config(executor=executor, cuda_graph_after=1))
    for scale in [1.0, 0.75, 0.3, 0.75, 1.5, 0.3]:
        with torch.no_grad():
            got, want = opt(y, scale), net(y, scale)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-4, rtol=1e-4)
    assert len(opt.variants) == 2 and opt.eager_calls == 0


class HostOutputs(torch.nn.Module):
    """A CUDA model returning a tensor it made on the CPU (``torch.arange`` with no device), and
    data made from a size and from an int argument (``blade.dim_value``)."""

    def forward(self, x, t: int):
        steps = torch.arange(x.shape[-1])
        stamp = torch.tensor([t], device=x.device).float() * 0.5 + x.shape[1]
        return x * 2 + stamp, steps, steps.to(x.device) * t


@pytest.mark.parametrize("executor", ["kernels", "program"])
def test_outputs_on_eagers_devices_and_host_values_in_cuda_graphs(executor, capfd):
    """Every output on the device eager returns it on (a CPU ``arange`` of a CUDA model came back
    on the GPU), and values made from sizes and int arguments captured into CUDA graphs (their
    host-to-device copies failed the capture: the module ran without graphs)."""
    model = HostOutputs().to(DEV).eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 5, device=DEV), 7), config=blade.Config(executor=executor,
                                                                                          cuda_graph_after=1))
    for _ in range(2):
        for shape, t in [((2, 3, 5), 7), ((1, 4, 9), 7), ((2, 3, 5), 11), ((3, 1, 6), 2)]:
            x = torch.randn(*shape, device=DEV)
            with torch.no_grad():
                got, want = opt(x, t), model(x, t)
            assert [g.device for g in got] == [w.device for w in want]
            for g, w in zip(got, want):
                torch.testing.assert_close(g, w)
    assert opt.eager_calls == 0 and all(v.graphs for v in opt.variants)
    assert "capture failed" not in capfd.readouterr().err


def test_decode_steps_with_a_cache_on_the_gpu():
    """A decoder's prompt and decode steps with a caller-owned DynamicCache through the CUDA
    default executor: one variant for the steps, the caller's cache updated as eager's."""
    from tests.unit.test_state_objects import DynamicCache, _decoder, _main_output

    torch.manual_seed(0)
    model = _decoder("llama").to(DEV)
    opt = blade.optimize(model, (torch.randint(0, 100, (2, 7), device=DEV),),
                         model_kwargs={"past_key_values": DynamicCache(), "use_cache": True})
    ids = torch.randint(0, 100, (2, 9), device=DEV)
    mine, theirs = DynamicCache(), DynamicCache()
    with torch.no_grad():
        for step in range(6):
            got = opt(ids, past_key_values=mine, use_cache=True)
            want = model(ids, past_key_values=theirs, use_cache=True)
            torch.testing.assert_close(_main_output(got), _main_output(want), atol=1e-4, rtol=1e-4)
            assert got.past_key_values is mine
            ids = torch.randint(0, 100, (2, 1), device=DEV)
    assert opt.eager_calls == 0 and len(opt.variants) <= 3


def test_generate_and_vae_decode_through_optimized_modules_on_the_gpu():
    """``opt.generate`` (forward calls routed through the optimized module, CUDA graphs per decode
    shape) and ``opt.decode`` of an optimized VAE (compiled from its second call) on the GPU."""
    from blade.models import _vae
    from tests.unit.test_state_objects import _decoder

    torch.manual_seed(0)
    model = _decoder("llama").to(DEV)
    opt = blade.optimize(model)
    for batch, prompt in [(2, 7), (1, 5), (3, 11), (2, 7)]:
        ids = torch.randint(3, 100, (batch, prompt), device=DEV)
        kw = dict(max_new_tokens=6, do_sample=False, pad_token_id=0, return_dict_in_generate=True, output_scores=True)
        want, got = model.generate(ids, **kw), opt.generate(ids, **kw)
        for a, b in zip(got.scores, want.scores):
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)
        assert torch.equal(got.sequences, want.sequences)
    assert opt.generate.mode == "routed" and opt.eager_calls == 0 and opt.variants

    ref_vae = _vae(reduced=True).to(DEV).eval()  # seeded: the same weights in float32
    vae = _vae(reduced=True).to(DEV).half().eval()
    opt_vae = blade.optimize(vae)
    with torch.no_grad():
        for batch, h, w in [(1, 8, 8), (3, 9, 5), (1, 8, 8), (2, 12, 10)]:
            z = torch.randn(batch, 4, h, w, device=DEV, dtype=torch.float16)
            ref = ref_vae.decode(z.float()).sample
            eager = vae.decode(z).sample.float()
            got = opt_vae.decode(z, generator=torch.Generator(DEV)).sample.float()
            err_eager, err = (eager - ref).abs().max().item(), (got - ref).abs().max().item()
            assert err <= 2 * err_eager + 1e-3, (batch, h, w, err, err_eager)
    assert opt_vae.decode.mode == "compiled" and opt_vae.decode.compiled.eager_calls == 0
