"""The cuDNN attention's description of an ``attention`` call (``runtime/cudnn_attention.py``) on
the CPU: for random calls (batch 1-3, heads, odd sequence lengths, head dims, packed and
projection-view layouts, size-1 dims) a served call's problem is one the C++ runtime validates and
describes with the same sizes, its result layout is the ``[b, s, h, d]`` memory the provider
allocates (causal calls too, as the composite graph's problems), and what cuDNN's attention does
not take (a mask, float32, head dims off
8 or above 256, a strided head dim, strides off 16 bytes, mismatched shapes) is refused so torch
computes it. The GPU results are checked in tests/gpu/test_gpu_cudnn_attention.py."""

import math
import random

import pytest
import torch

from blade.runtime.cudnn_attention import attention_problem, result_strides
from blade.runtime.native_loop import Shadow
from tests.native_build import build_native


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build_native(tmp_path_factory)[1]


def _on_cuda(*tensors):
    """Shadows of CPU tensors that read as CUDA ones (the description looks at metadata only)."""
    out = []
    for t in tensors:
        s = Shadow(t)
        s.is_cuda, s.device = True, torch.device("cuda", 0)
        out.append(s)
    return out


def _layout(rng, b, h, s, d, dtype):
    if rng.random() < 0.5:
        return torch.empty(b, h, s, d, dtype=dtype)
    return torch.empty(b, s, 3, h, d, dtype=dtype)[:, :, rng.randrange(3)].transpose(1, 2)


@pytest.mark.parametrize("seed", range(60))
def test_served_calls_are_valid_problems(native, seed):
    rng = random.Random(seed)
    b, h = rng.choice([1, 2, 3]), rng.choice([1, 3, 8])
    s_q, s_kv = rng.choice([1, 7, 77, 4096]), rng.choice([5, 77, 333])
    d = rng.choice([8, 40, 64, 160, 256])
    dtype = rng.choice([torch.float16, torch.bfloat16])
    q = _layout(rng, b, h, s_q, d, dtype)
    k, v = _layout(rng, b, h, s_kv, d, dtype), _layout(rng, b, h, s_kv, d, dtype)
    scale = rng.choice([None, 0.125])
    causal = rng.random() < 0.4
    hit = attention_problem({"is_causal": causal, "scale": scale}, *_on_cuda(q, k, v))
    assert hit is not None, (q.stride(), k.stride(), v.stride())
    problem, shape, strides, got_scale = hit
    assert shape == (b, h, s_q, d)
    assert strides == torch.empty(b, s_q, h, d).transpose(1, 2).stride()
    assert got_scale == pytest.approx(1 / math.sqrt(d) if scale is None else scale)
    text = native.attention_problem_text(*problem.args())  # the C++ runtime takes it
    assert f"Q [{b}, {h}, {s_q}, {d}]" in text and f"K [{b}, {h}, {s_kv}, {d}]" in text
    assert problem.causal == causal and text.endswith(", causal") == causal


def test_result_strides_are_torch_s_transposed_layout():
    for b, h, s, d in [(2, 8, 4096, 40), (1, 1, 1, 8), (3, 5, 77, 64)]:
        assert result_strides(b, h, s, d) == torch.empty(b, s, h, d).transpose(1, 2).stride()


def test_refusals(native):
    q = torch.empty(2, 4, 33, 64, dtype=torch.float16)
    ok = {"is_causal": False, "scale": None}
    assert attention_problem(ok, *_on_cuda(q, q, q)) is not None
    assert attention_problem({"is_causal": True, "scale": None}, *_on_cuda(q, q, q))[0].causal
    assert attention_problem({"is_causal": False, "scale": None, "dropout_p": 0.1}, *_on_cuda(q, q, q)) is None
    assert attention_problem(ok, *_on_cuda(q.float(), q.float(), q.float())) is None
    assert attention_problem(ok, q, q, q) is None  # not on CUDA
    odd = torch.empty(2, 4, 33, 36, dtype=torch.float16)
    assert attention_problem(ok, *_on_cuda(odd, odd, odd)) is None  # head dim off 8
    big = torch.empty(1, 1, 8, 264, dtype=torch.float16)
    assert attention_problem(ok, *_on_cuda(big, big, big)) is None  # above 256
    strided = torch.empty(2, 4, 33, 128, dtype=torch.float16)[..., ::2]
    assert attention_problem(ok, *_on_cuda(strided, strided, strided)) is None
    ragged = torch.empty(2, 4, 33, 68, dtype=torch.float16)[..., :64]  # rows 136 bytes apart
    assert attention_problem(ok, *_on_cuda(ragged, ragged, ragged)) is None
    expanded = torch.empty(1, 4, 33, 64, dtype=torch.float16).expand(2, -1, -1, -1)  # stride 0 over the batch
    assert attention_problem(ok, *_on_cuda(q, expanded, expanded)) is None
    one = torch.empty(2, 4, 1, 64, dtype=torch.float16).expand(-1, -1, 33, -1)  # over the sequence
    assert attention_problem(ok, *_on_cuda(q, one, one)) is None
    with pytest.raises(ValueError, match="stride 0"):  # and the C++ runtime refuses it too
        native.attention_problem_text(2, [2, 4, 4, 33, 33, 64, 64],
                                      [[8448, 2112, 64, 1], [0, 2112, 64, 1], [8448, 2112, 64, 1], [8448, 64, 256, 1]],
                                      False)
    k = torch.empty(2, 2, 33, 64, dtype=torch.float16)  # fewer key heads: torch's enable_gqa, not served
    assert attention_problem(ok, *_on_cuda(q, k, k)) is None
    with pytest.raises(ValueError, match="multiples of 8"):  # the C++ runtime's own check agrees
        native.attention_problem_text(2, [2, 4, 4, 33, 33, 36, 36], [[0, 0, 0, 1]] * 4, False)
