"""cuDNN's fused attention from Blade's C++ runtime on a GPU (``runtime/cudnn_attention.py``,
``runtime/cpp/cudnn_attention.cpp``): random problems (float16 and bfloat16; batch 1 and 3, odd
sequence lengths, head dims 8-256, layouts [b, h, s, d] and views of one [b, s, 3, h, d]
projection, explicit scales, causal or not), each against float64 within the fp16 bar; a
CUDA-graph capture;
what it refuses going to torch; and the SD 1.5 UNet through ``Config(attention_library="cudnn")``,
its attention from the C++ step loop, against the same module with the loop off."""

import copy
import random

import pytest
import torch
import torch.nn.functional as F
import torch.utils._pytree as pytree

import blade
from blade import models
from blade.runtime.cudnn_attention import CudnnAttention, attention_problem

from tests.gpu.helpers import within_fp16_bar

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def attn():
    a, why = CudnnAttention.create()
    assert a is not None, f"cuDNN attention must be usable on the GPU machine: {why}"
    return a


def _case(rng: random.Random, seed: int):
    b, h = rng.choice([1, 2, 3]), rng.choice([1, 2, 5, 8])
    s_q, s_kv = rng.choice([1, 7, 77, 130, 257, 1024]), rng.choice([7, 77, 130, 333, 1024])
    d = rng.choice([8, 40, 64, 72, 80, 128, 160, 256])
    dtype = rng.choice([torch.float16, torch.bfloat16])
    g = torch.Generator(device="cuda").manual_seed(seed)
    if rng.random() < 0.4 and s_q == s_kv:  # views of one projection [b, s, 3, h, d], as a UNet's
        qkv = torch.randn(b, s_q, 3, h, d, device="cuda", generator=g)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))
    else:
        q = torch.randn(b, h, s_q, d, device="cuda", generator=g)
        k = torch.randn(b, h, s_kv, d, device="cuda", generator=g)
        v = torch.randn(b, h, s_kv, d, device="cuda", generator=g)
    scale = rng.choice([None, 0.1, 1.0])
    return q, k, v, dtype, scale, rng.random() < 0.35


@pytest.mark.parametrize("seed", range(60))
def test_random_attention_against_float64(attn, seed):
    rng = random.Random(seed)
    q, k, v, dtype, scale, causal = _case(rng, seed)
    attrs = {"is_causal": causal, "scale": scale}
    inputs = [t.to(dtype) for t in (q, k, v)]
    if not q.is_contiguous():  # keep the projection's layout in the low-precision copy
        qkv = torch.stack([q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)], 2).to(dtype)
        inputs = [qkv[:, :, i].transpose(1, 2) for i in range(3)]
    assert attention_problem(attrs, *inputs) is not None
    got = attn(attrs, inputs)
    assert got is not None, attn.refused
    ref = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), scale=scale, is_causal=causal).float()
    eager = F.scaled_dot_product_attention(*inputs, scale=scale, is_causal=causal)
    assert got.shape == ref.shape and got.dtype == dtype
    within_fp16_bar(got, ref, eager)


def test_refused_calls_go_to_torch(attn):
    q = torch.randn(2, 4, 33, 64, device="cuda", dtype=torch.float16)
    assert attn({"is_causal": False, "scale": None}, [q.float(), q.float(), q.float()]) is None
    odd = torch.randn(2, 4, 33, 36, device="cuda", dtype=torch.float16)  # head dim not a multiple of 8
    assert attn({"is_causal": False, "scale": None}, [odd, odd, odd]) is None
    mask = torch.zeros(33, 33, device="cuda", dtype=torch.float16)
    assert attn({"is_causal": False, "scale": None}, [q, q, q, mask]) is None


def test_capture_in_a_cuda_graph(attn):
    q, k, v = (torch.randn(2, 8, 256, 40, device="cuda", dtype=torch.float16) for _ in range(3))
    attrs = {"is_causal": False, "scale": None}
    attn(attrs, [q, k, v])  # the plan is made outside the capture
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = attn(attrs, [q, k, v])
    assert out is not None
    for t in (q, k, v):
        t.copy_(torch.randn_like(t))
    g.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), rtol=2e-2, atol=2e-2)


def test_unet_attention_from_the_cxx_loop():
    """SD 1.5 UNet (fp16, random weights) with ``attention_library="cudnn"`` and graphs off: from a
    shape's third call its attention runs from the C++ step list (and the first call's answer, from
    torch's attention, agrees); the outputs match the same module with the loop switched off and the
    fp16 bar against float32 eager."""
    model = models.unet(torch.float16, "cuda")
    x0 = models.unet_inputs(2, 256, 256, dtype=torch.float16, device="cuda")
    opt = blade.optimize(model, x0, config=blade.Config(executor="program", cuda_graphs=False,
                                                        attention_library="cudnn", conv_library="cudnn"))
    with torch.no_grad():
        for shape in [(2, 256, 256), (3, 200, 136)]:
            x = models.unet_inputs(*shape, dtype=torch.float16, device="cuda", seed=shape[1])
            outs = [pytree.tree_leaves(opt(*x))[0].clone() for _ in range(3)]
            torch.testing.assert_close(outs[2], outs[0], rtol=2e-2, atol=2e-2)
        runners = [v.executor.runner for v in opt.variants]
        loops = [plan.native for r in runners for plan in r._call_plans.values() if plan.native is not None]
        assert loops and all(loop.native_attentions >= 16 for loop in loops), [loop.describe() for loop in loops]
        for r in runners:
            r.native_loop = False
            for plan in r._call_plans.values():
                plan.native = None
        ref = pytree.tree_leaves(opt(*x))[0]
        torch.testing.assert_close(outs[2], ref, rtol=1e-2, atol=1e-2)
        ref32 = pytree.tree_leaves(copy.deepcopy(model).float()(*[t.float() for t in x]))[0]
        eager = pytree.tree_leaves(model(*x))[0]
        within_fp16_bar(outs[2], ref32, eager)
