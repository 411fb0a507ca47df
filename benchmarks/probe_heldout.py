"""Probe Blade on models and call patterns no test names: compile once at one shape on the CPU
(fp32, default executor), serve other shapes (batch 1 and 3, odd sizes), compare with eager and
report max error, variants and eager fallback answers. Run: python benchmarks/probe_heldout.py [name...]
"""

from __future__ import annotations

import sys
import time
import traceback

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils._pytree as pytree

import blade

CASES = {}


def case(example, shapes):
    def deco(fn):
        CASES[fn.__name__] = (fn, example, shapes)
        return fn
    return deco


def leaves(out):
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def run_case(name):
    fn, example, shapes = CASES[name]
    torch.manual_seed(0)
    model, make = fn()
    model.eval()
    args, kwargs = make(*example)
    t0 = time.time()
    with torch.no_grad():
        opt = blade.optimize(model, args, model_kwargs=kwargs)
    ct = time.time() - t0
    worst = 0.0
    for i, shape in enumerate([example] + list(shapes)):
        torch.manual_seed(100 + i)
        args, kwargs = make(*shape)
        with torch.no_grad():
            out = opt(*args, **kwargs)
            ref = model(*args, **kwargs)
        assert type(out) is type(ref), (type(out), type(ref))
        g, w = leaves(out), leaves(ref)
        assert len(g) == len(w), (len(g), len(w))
        for a, b in zip(g, w):
            assert a.shape == b.shape and a.dtype == b.dtype, (shape, a.shape, b.shape, a.dtype, b.dtype)
            if a.is_floating_point():
                err = ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item() if a.numel() else 0.0
                worst = max(worst, err)
                assert err < 1e-4, f"shape {shape}: rel err {err:.2e}"
            else:
                assert torch.equal(a, b), f"shape {shape}: integer/bool output differs"
    fallbacks = sorted({u.target for v in opt.variants for u in v.program.report.unsupported})
    return dict(variants=len(opt.variants), eager_calls=opt.eager_calls, err=worst, compile_s=round(ct, 1),
                fallbacks=fallbacks)


# ------------------------------------------------------------------ plain nn patterns

@case((2, 16), [(1, 9), (3, 13), (5, 31)])
def inplace_intermediate():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(8, 8)

        def forward(self, x):
            h = self.l(x)
            h.mul_(2.0)
            h[:, 0] = 0.0
            h.add_(x)
            h.relu_()
            return h
    return M(), lambda b, n: ((torch.randn(b, n, 8),), {})


@case((2, 16), [(1, 9), (3, 13)])
def where_scalars_bool_mask():
    class M(nn.Module):
        def forward(self, x, mask):
            y = torch.where(x > 0, x, 0.5)
            z = torch.where(mask, 1.0, -1.0)
            w = x.masked_fill(~mask, float("-inf")).softmax(-1)
            return y * z + w, mask.sum(-1), mask & (x > 0)
    return M(), lambda b, n: ((torch.randn(b, n), torch.rand(b, n) > 0.3), {})


@case((2, 16), [(1, 9), (3, 13)])
def arange_positions():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Embedding(64, 8)
            self.tok = nn.Embedding(50, 8)

        def forward(self, ids):
            pos = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0).expand_as(ids)
            return self.tok(ids) + self.pos(pos), pos * 2 + 1
    return M(), lambda b, n: ((torch.randint(0, 50, (b, n)),), {})


@case((2, 16), [(1, 9), (3, 13)])
def chunk_split_unbind():
    class M(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=-1)
            c, d, e = x.split([4, 8, 4], dim=-1)
            rows = x.unbind(0)
            return a * b, c.sum(-1) + e.mean(-1), d, rows[0]
    return M(), lambda b, n: ((torch.randn(b, n, 16),), {})


@case((2, 16), [(1, 9), (3, 13)])
def chunk_dynamic_dim():
    class M(nn.Module):
        def forward(self, x):
            a, b = x.chunk(2, dim=1)
            return a - b
    return M(), lambda b, n: ((torch.randn(b, 2 * n, 4),), {})


@case((2, 16), [(1, 9), (3, 13)])
def einsum_bmm_broadcast():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 8))

        def forward(self, q, k):
            s = torch.einsum("bnd,bmd->bnm", q, k)
            t = torch.matmul(q, self.w)  # 3D @ 2D
            u = torch.matmul(q.unsqueeze(1), k.transpose(1, 2).unsqueeze(0))  # broadcast batch
            return s, t, u.sum(1), torch.einsum("bnd,de->bne", q, self.w)
    return M(), lambda b, n: ((torch.randn(b, n, 8), torch.randn(b, n, 8)), {})


@case((2, 16), [(1, 9), (3, 13)])
def cumsum_cumprod():
    class M(nn.Module):
        def forward(self, x, mask):
            pos = mask.long().cumsum(-1) * mask.long()
            return x.cumsum(1), pos, torch.logcumsumexp(x, 1)
    return M(), lambda b, n: ((torch.randn(b, n), torch.rand(b, n) > 0.2), {})


@case((2, 32), [(1, 17), (3, 45)])
def conv1d_conv3d():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(4, 8, 3, padding=1)
            self.c1s = nn.Conv1d(8, 8, 5, stride=2, padding=2, groups=2)
            self.c3 = nn.Conv3d(2, 4, 3, padding=1)

        def forward(self, x, v):
            return self.c1s(F.gelu(self.c1(x))), self.c3(v)
    return M(), lambda b, n: ((torch.randn(b, 4, n), torch.randn(b, 2, 3, n // 4 + 1, 5)), {})


@case((2, 16), [(1, 9), (3, 13)])
def interpolate_scale_factor():
    class M(nn.Module):
        def forward(self, x):
            a = F.interpolate(x, scale_factor=2.0, mode="nearest")
            b = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            c = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=True)
            return a + b, c
    return M(), lambda b, n: ((torch.randn(b, 3, n, n + 2),), {})


@case((2, 16), [(1, 9), (3, 13)])
def adaptive_pooling():
    class M(nn.Module):
        def forward(self, x):
            return F.adaptive_avg_pool2d(x, (1, 1)), F.adaptive_avg_pool2d(x, 3), F.adaptive_max_pool2d(x, 2)
    return M(), lambda b, n: ((torch.randn(b, 3, n, n + 3),), {})


@case((2, 16), [(1, 9), (3, 13)])
def pad_modes():
    class M(nn.Module):
        def forward(self, x):
            return (F.pad(x, (1, 2, 3, 1), mode="reflect"), F.pad(x, (1, 1, 2, 2), mode="replicate"),
                    F.pad(x, (2, 2, 1, 1), mode="circular"), F.pad(x, (1, 0, 0, 1), value=0.5))
    return M(), lambda b, n: ((torch.randn(b, 3, n, n + 1),), {})


@case((2, 16), [(1, 9), (3, 13)])
def embedding_bag():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag(40, 8, mode="mean")

        def forward(self, ids):
            return self.bag(ids)
    return M(), lambda b, n: ((torch.randint(0, 40, (b, n)),), {})


@case((2, 16), [(1, 9), (3, 13)])
def dict_tuple_outputs():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(8, 8)

        def forward(self, x):
            h = self.l(x)
            return {"h": h, "pair": (h.sum(-1), [h.mean()])}
    return M(), lambda b, n: ((torch.randn(b, n, 8),), {})


@case((2, 16), [(1, 9), (3, 13)])
def kwargs_only_optional_none_bool():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.l = nn.Linear(8, 8)

        def forward(self, *, x, mask=None, scale=None, flag: bool = False):
            h = self.l(x)
            if mask is not None:
                h = h * mask.unsqueeze(-1)
            if scale is not None:
                h = h * scale
            if flag:
                h = -h
            return h
    return M(), lambda b, n: ((), dict(x=torch.randn(b, n, 8), mask=torch.ones(b, n), flag=True))


@case((2, 16), [(1, 9), (3, 13)])
def bool_tensor_input():
    class M(nn.Module):
        def forward(self, x, keep):
            return torch.where(keep[:, None], x, -x), keep.any()
    return M(), lambda b, n: ((torch.randn(b, n), torch.arange(b) % 2 == 0), {})


@case((2, 16), [(1, 9), (3, 13)])
def norms_misc():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(8)
            self.inorm = nn.InstanceNorm1d(8, affine=True)
            self.ln = nn.LayerNorm(8, elementwise_affine=False)

        def forward(self, x):
            y = self.bn(x)
            z = self.inorm(x)
            return self.ln(x.transpose(1, 2)), y + z, F.normalize(x, dim=1), torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    m = M()
    with torch.no_grad():
        m.bn.running_mean.normal_(0, 0.1)
        m.bn.running_var.uniform_(0.5, 1.5)
    return m, lambda b, n: ((torch.randn(b, 8, n),), {})


@case((2, 16), [(1, 9), (3, 13)])
def gather_index_topk_sort():
    class M(nn.Module):
        def forward(self, x, idx):
            g = torch.gather(x, 1, idx)
            v, i = x.topk(3, dim=-1)
            s, si = x.sort(-1)
            return g, v, i, s, x.argmax(-1), x[:, 1:-1:2], x.flip(-1), x.roll(1, -1)
    return M(), lambda b, n: ((torch.randn(b, n), torch.randint(0, n, (b, 4))), {})


@case((2, 16), [(1, 9), (3, 13)])
def reshape_views():
    class M(nn.Module):
        def forward(self, x):
            b, n, c = x.shape
            h = x.view(b, n, 2, c // 2).permute(0, 2, 1, 3).reshape(b * 2, n, c // 2)
            f = x.flatten(1)
            return h, f, x.unflatten(-1, (4, 2)), x.repeat(1, 2, 1), x.repeat_interleave(2, dim=1), x.tril(), x.expand(b, n, c).contiguous().T
    return M(), lambda b, n: ((torch.randn(b, n, 8),), {})


@case((2, 16), [(1, 9), (3, 13)])
def scalar_from_shape_math():
    class M(nn.Module):
        def forward(self, x):
            n = x.shape[-1]
            scale = n ** -0.5
            m = torch.full((x.shape[0], n), float(n))
            return x * scale + m, x.new_zeros(x.shape[0], 2 * n), torch.ones_like(x).cumsum(-1) / n
    return M(), lambda b, n: ((torch.randn(b, n),), {})


@case((2, 16), [(1, 9), (3, 13)])
def attention_masks():
    class M(nn.Module):
        def forward(self, q, k, v):
            n = q.shape[2]
            causal = torch.ones(n, n, dtype=torch.bool).tril()
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
            b = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            bias = torch.zeros(n, n).masked_fill(~causal, float("-inf"))
            c = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            return a, b, c
    return M(), lambda b, n: ((torch.randn(b, 2, n, 8), torch.randn(b, 2, n, 8), torch.randn(b, 2, n, 8)), {})


@case((2, 16), [(1, 9), (3, 13)])
def activations():
    class M(nn.Module):
        def forward(self, x):
            return (F.silu(x), F.gelu(x, approximate="tanh"), F.mish(x), F.hardswish(x), F.elu(x), F.leaky_relu(x, 0.1),
                    F.softplus(x), torch.erf(x), F.glu(x, -1), torch.clamp(x, min=-0.5), x.sigmoid() ** 2, torch.atan2(x, x + 1),
                    F.relu6(x), F.hardsigmoid(x), F.logsigmoid(x), F.log_softmax(x, -1), F.prelu(x, torch.tensor([0.2])))
    return M(), lambda b, n: ((torch.randn(b, n, 8),), {})


@case((2, 16), [(1, 9), (3, 13)])
def int_math():
    class M(nn.Module):
        def forward(self, ids):
            return ids // 3, ids % 5, (ids * 2).clamp(max=40), ids.float().mean(), torch.bucketize(ids.float(), torch.tensor([5.0, 10.0, 20.0]))
    return M(), lambda b, n: ((torch.randint(0, 50, (b, n)),), {})


@case((2, 16), [(1, 9), (3, 13)])
def dataclass_output():
    from dataclasses import dataclass

    @dataclass
    class Out:
        a: torch.Tensor
        b: torch.Tensor

    class M(nn.Module):
        def forward(self, x):
            return Out(x * 2, x.sum(-1))
    return M(), lambda b, n: ((torch.randn(b, n, 4),), {})


@case((2, 16), [(1, 9), (3, 13)])
def interpolate_to_other_size():
    class M(nn.Module):
        def forward(self, x, skip):
            return F.interpolate(x, size=skip.shape[-2:], mode="nearest") + skip
    return M(), lambda b, n: ((torch.randn(b, 3, n // 2 + 1, n // 2 + 1), torch.randn(b, 3, n, n)), {})


@case((2, 16), [(1, 9), (3, 13)])
def multihead_attention_padding_mask():
    m = nn.MultiheadAttention(16, 2, batch_first=True)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = m

        def forward(self, x, pad):
            return self.m(x, x, x, key_padding_mask=pad, need_weights=False)[0]

    def make(b, n):
        pad = torch.zeros(b, n, dtype=torch.bool)
        pad[0, n - 2:] = True
        return (torch.randn(b, n, 16), pad), {}
    return M(), make


@case((2, 16), [(1, 9), (3, 13)])
def transformer_encoder_layer():
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True, dropout=0.0)
    return layer, lambda b, n: ((torch.randn(b, n, 16),), {})


@case((2, 16), [(1, 9), (3, 13)])
def conv_transpose():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1)

        def forward(self, x):
            return self.up(x)
    return M(), lambda b, n: ((torch.randn(b, 4, n, n + 1),), {})


@case((2, 16), [(1, 9), (3, 13)])
def gru():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.GRU(8, 8, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0]
    return M(), lambda b, n: ((torch.randn(b, n, 8),), {})


@case((2, 16), [(1, 9), (3, 13)])
def dtype_casts():
    class M(nn.Module):
        def forward(self, x, ids):
            y = x.half().float() + ids.float()
            return y.to(torch.float64), (x > 0).long().sum(-1), ids.to(torch.int32) * 2
    return M(), lambda b, n: ((torch.randn(b, n), torch.randint(0, 9, (b, n))), {})


@case((2, 16), [(1, 9), (3, 13)])
def masked_softmax_fully_masked_rows():
    class M(nn.Module):
        def forward(self, s, mask):
            return s.masked_fill(~mask, torch.finfo(s.dtype).min).softmax(-1)

    def make(b, n):
        mask = torch.ones(b, n, n, dtype=torch.bool)
        mask[0, 0] = False
        return (torch.randn(b, n, n), mask), {}
    return M(), make


@case((2, 16), [(1, 9), (3, 13)])
def baddbmm_addmm():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(8, 8))
            self.b = nn.Parameter(torch.randn(8))

        def forward(self, q, k):
            s = torch.baddbmm(torch.zeros(q.shape[0], q.shape[1], k.shape[1]), q, k.transpose(1, 2), beta=0.0, alpha=0.5)
            return s, torch.addmm(self.b, q.flatten(0, 1), self.w, beta=2.0, alpha=0.5)
    return M(), lambda b, n: ((torch.randn(b, n, 8), torch.randn(b, n, 8)), {})


@case((2, 16), [(1, 9), (3, 13)])
def norms_3d_and_last_two():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.gn = nn.GroupNorm(2, 4)
            self.ln = nn.LayerNorm([4, 8])

        def forward(self, x, y):
            return self.gn(x), self.ln(y)
    return M(), lambda b, n: ((torch.randn(b, 4, n), torch.randn(b, n, 4, 8)), {})


@case((2, 16), [(1, 9), (3, 13)])
def boolean_mask_select():
    class M(nn.Module):
        def forward(self, x):
            return x[x > 0].sum() + x.nonzero().shape[0]
    return M(), lambda b, n: ((torch.randn(b, n),), {})


@case((2, 16), [(1, 9), (3, 13)])
def sdpa_separate_qkv_inputs():
    class M(nn.Module):
        def forward(self, q, k, v):
            return F.scaled_dot_product_attention(q, k, v)
    return M(), lambda b, n: ((torch.randn(b, 2, n, 8), torch.randn(b, 2, n + 3, 8), torch.randn(b, 2, n + 3, 8)), {})


@case((2, 16), [(1, 9), (3, 13)])
def sdpa_shared_projection_mask():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(16, 48)

        def forward(self, x, mask):
            b, n, _ = x.shape
            q, k, v = self.qkv(x).view(b, n, 3, 2, 8).permute(2, 0, 3, 1, 4)
            bias = torch.zeros(b, 1, 1, n).masked_fill(~mask[:, None, None, :], float("-inf"))
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias), F.scaled_dot_product_attention(q, k, v, is_causal=True)

    def make(b, n):
        mask = torch.ones(b, n, dtype=torch.bool)
        mask[0, n - 3:] = False
        return (torch.randn(b, n, 16), mask), {}
    return M(), make


# ------------------------------------------------------------------ transformers / diffusers

def _hf(cls_name, cfg_name, **cfg):
    import transformers
    from blade.models import randomize, _skip_library_init
    with _skip_library_init():
        m = getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**cfg))
    return randomize(m).eval()


def _ids(vocab):
    def make(b, n):
        ids = torch.randint(0, vocab, (b, n))
        mask = torch.ones(b, n, dtype=torch.long)
        mask[0, n // 2:] = 0
        return (ids,), dict(attention_mask=mask)
    return make


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def llama():
    m = _hf("LlamaModel", "LlamaConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mistral():
    m = _hf("MistralModel", "MistralConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def qwen2():
    m = _hf("Qwen2Model", "Qwen2Config", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def llama_causal_lm():
    m = _hf("LlamaForCausalLM", "LlamaConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, lambda b, n: ((torch.randint(0, 100, (b, n)),), {})


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def roberta():
    return _hf("RobertaModel", "RobertaConfig", vocab_size=100, max_position_embeddings=80, **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def distilbert():
    return _hf("DistilBertModel", "DistilBertConfig", vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
               max_position_embeddings=80), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def albert():
    return _hf("AlbertModel", "AlbertConfig", vocab_size=100, embedding_size=16, max_position_embeddings=80,
               **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def deberta_v2():
    return _hf("DebertaV2Model", "DebertaV2Config", vocab_size=100, max_position_embeddings=80,
               relative_attention=True, position_buckets=16, max_relative_positions=32,
               pos_att_type=["p2c", "c2p"], **SMALL), _ids(100)


def _seq2seq(cls_name, cfg_name, **cfg):
    m = _hf(cls_name, cfg_name, **cfg)

    def make(b, n):
        ids = torch.randint(0, 100, (b, n))
        dec = torch.randint(0, 100, (b, max(1, n // 2 + 1)))
        return (ids,), dict(decoder_input_ids=dec, use_cache=False)
    return m, make


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def bart():
    return _seq2seq("BartModel", "BartConfig", vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_position_embeddings=80)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def t5_seq2seq():
    return _seq2seq("T5Model", "T5Config", vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                    num_decoder_layers=1, num_heads=4)


@case((2, 128), [(1, 128), (3, 128), (5, 128)])
def whisper_encoder():
    import transformers
    from blade.models import randomize, _skip_library_init
    cfg = transformers.WhisperConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=64,
                                     max_target_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)
    with _skip_library_init():
        m = transformers.WhisperModel(cfg).encoder
    m = randomize(m).eval()
    # frames = 2 * positions; whisper checks the length equals max_source_positions*2
    return m, lambda b, n: ((torch.randn(b, 8, n),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def clip_vision():
    return _hf("CLIPVisionModel", "CLIPVisionConfig", image_size=32, patch_size=8, num_channels=3, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 64), (3, 32), (2, 96)])
def swin():
    return _hf("SwinModel", "SwinConfig", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
               num_heads=[2, 2], window_size=4), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def convnext():
    return _hf("ConvNextModel", "ConvNextConfig", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def deit():
    return _hf("DeiTModel", "DeiTConfig", image_size=32, patch_size=8, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def mobilenet_v2():
    return _hf("MobileNetV2Model", "MobileNetV2Config", image_size=32, depth_multiplier=0.35), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def segformer():
    return _hf("SegformerForSemanticSegmentation", "SegformerConfig", num_encoder_blocks=2, depths=[1, 1],
               sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2], decoder_hidden_size=32,
               num_labels=3, patch_sizes=[7, 3], strides=[4, 2]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


def _diffusers(cls_name, **cfg):
    import diffusers
    from blade.models import randomize, _skip_library_init
    with _skip_library_init():
        m = getattr(diffusers, cls_name)(**cfg)
    return randomize(m).eval()


@case((2, 32), [(1, 16), (3, 24), (2, 40)])
def unet2d_unconditional():
    m = _diffusers("UNet2DModel", sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return m, lambda b, r: ((torch.randn(b, 3, r, r), torch.tensor(10.0)), {})


@case((2, 16), [(1, 8), (3, 24), (2, 40)])
def unet_class_embedding():
    m = _diffusers("UNet2DConditionModel", sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=16, attention_head_dim=8,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), class_embed_type="timestep",
                   num_class_embeds=None)
    return m, lambda b, r: ((torch.randn(b, 4, r, r), torch.tensor(10.0), torch.randn(b, 7, 16)),
                            dict(class_labels=torch.randint(0, 10, (b,)).float()))


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def vae_encode():
    vae = _diffusers("AutoencoderKL", in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                     block_out_channels=(16, 32), norm_num_groups=8,
                     down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, x):
            return self.vae.encode(x).latent_dist.mode()
    return Enc(), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def dit_transformer2d():
    m = _diffusers("DiTTransformer2DModel", num_attention_heads=2, attention_head_dim=8, in_channels=4,
                   out_channels=4, num_layers=1, sample_size=16, patch_size=2, norm_num_groups=8, num_embeds_ada_norm=10)
    return m, lambda b, r: ((torch.randn(b, 4, r, r), torch.tensor([5] * b)), dict(class_labels=torch.randint(0, 10, (b,))))



# ------------------------------------------------------------------ more families (session 8)

def _decoder(cls_name, cfg_name, **cfg):
    cfg = {"vocab_size": 100, "use_cache": False, **SMALL, **cfg}
    return _hf(cls_name, cfg_name, **cfg), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gpt_neox():
    return _decoder("GPTNeoXModel", "GPTNeoXConfig", rotary_pct=0.5)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def falcon():
    return _decoder("FalconModel", "FalconConfig", new_decoder_architecture=True, num_kv_heads=2)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def phi():
    return _decoder("PhiModel", "PhiConfig", partial_rotary_factor=0.5)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def phi3():
    return _decoder("Phi3Model", "Phi3Config", num_key_value_heads=2, pad_token_id=0)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gemma():
    return _decoder("GemmaModel", "GemmaConfig", num_key_value_heads=1, head_dim=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gemma2():
    return _decoder("Gemma2Model", "Gemma2Config", num_key_value_heads=2, head_dim=8, sliding_window=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def qwen3():
    return _decoder("Qwen3Model", "Qwen3Config", num_key_value_heads=2, head_dim=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def opt():
    return _hf("OPTModel", "OPTConfig", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def bloom():
    return _hf("BloomModel", "BloomConfig", vocab_size=100, hidden_size=32, n_layer=2, n_head=4,
               use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gptj():
    return _hf("GPTJModel", "GPTJConfig", vocab_size=100, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
               n_positions=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gpt_bigcode():
    return _hf("GPTBigCodeModel", "GPTBigCodeConfig", vocab_size=100, n_embd=32, n_layer=2, n_head=4,
               multi_query=True, n_positions=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mpt():
    return _hf("MptModel", "MptConfig", vocab_size=100, d_model=32, n_layers=2, n_heads=4, max_seq_len=80,
               use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def electra():
    return _hf("ElectraModel", "ElectraConfig", vocab_size=100, embedding_size=16, max_position_embeddings=80,
               **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mpnet():
    return _hf("MPNetModel", "MPNetConfig", vocab_size=100, max_position_embeddings=80, **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def pegasus():
    return _seq2seq("PegasusModel", "PegasusConfig", vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_position_embeddings=80)


@case((2, 400), [(1, 320), (3, 560), (2, 999)])
def wav2vec2():
    m = _hf("Wav2Vec2Model", "Wav2Vec2Config", hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
            feat_extract_norm="layer")
    return m, lambda b, n: ((torch.randn(b, n),), {})


@case((2, 32), [(1, 32), (3, 32), (2, 32)])
def beit():
    return _hf("BeitModel", "BeitConfig", image_size=32, patch_size=8, use_relative_position_bias=True,
               **SMALL), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 28), [(1, 42), (3, 35), (2, 56)])
def dinov2():
    return _hf("Dinov2Model", "Dinov2Config", image_size=28, patch_size=7, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def siglip_vision():
    return _hf("SiglipVisionModel", "SiglipVisionConfig", image_size=32, patch_size=8, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def resnet_hf():
    return _hf("ResNetModel", "ResNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
               layer_type="bottleneck"), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def regnet():
    return _hf("RegNetModel", "RegNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
               groups_width=8), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def efficientnet():
    import transformers
    from transformers.models.efficientnet.modeling_efficientnet import round_filters
    cfg = dict(image_size=32, width_coefficient=0.25, depth_coefficient=0.25)
    top = round_filters(transformers.EfficientNetConfig(**cfg), 1280)  # the top conv's width
    return _hf("EfficientNetModel", "EfficientNetConfig", hidden_dim=top, **cfg), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def poolformer():
    return _hf("PoolFormerModel", "PoolFormerConfig", hidden_sizes=[16, 32], depths=[1, 1], num_encoder_blocks=2,
               patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 64), (3, 32), (2, 96)])
def mobilevit():
    return _hf("MobileViTModel", "MobileViTConfig", image_size=32, hidden_sizes=[16, 24, 32],
               neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def convnextv2():
    return _hf("ConvNextV2Model", "ConvNextV2Config", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def sd3_transformer():
    m = _diffusers("SD3Transformer2DModel", sample_size=16, patch_size=2, in_channels=4, num_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
                   pooled_projection_dim=8, out_channels=4, pos_embed_max_size=32)
    return m, lambda b, r: ((torch.randn(b, 4, r, r),), dict(encoder_hidden_states=torch.randn(b, 7, 16),
                                                             pooled_projections=torch.randn(b, 8),
                                                             timestep=torch.tensor([3] * b)))


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def pixart():
    m = _diffusers("PixArtTransformer2DModel", sample_size=16, patch_size=2, in_channels=4, out_channels=4,
                   num_layers=1, attention_head_dim=8, num_attention_heads=2, cross_attention_dim=16,
                   caption_channels=12, norm_num_groups=8)
    return m, lambda b, r: ((torch.randn(b, 4, r, r),), dict(encoder_hidden_states=torch.randn(b, 7, 12),
                                                             timestep=torch.tensor([3] * b),
                                                             added_cond_kwargs={"resolution": None,
                                                                                "aspect_ratio": None}))


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def flux_transformer():
    m = _diffusers("FluxTransformer2DModel", patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                   axes_dims_rope=(2, 2, 4))

    def make(b, r):
        n = (r // 2) * (r // 2)
        img_ids = torch.zeros(n, 3)
        img_ids[:, 1] = torch.arange(n) // (r // 2)
        img_ids[:, 2] = torch.arange(n) % (r // 2)
        return (torch.randn(b, n, 16),), dict(encoder_hidden_states=torch.randn(b, 7, 16),
                                              pooled_projections=torch.randn(b, 8), timestep=torch.tensor([0.5] * b),
                                              img_ids=img_ids, txt_ids=torch.zeros(7, 3))
    return m, make


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def autoencoder_tiny():
    m = _diffusers("AutoencoderTiny", encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                   num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4)
    return m, lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def vq_model():
    m = _diffusers("VQModel", in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                   latent_channels=4, num_vq_embeddings=32, norm_num_groups=8,
                   down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return m, lambda b, r: ((torch.randn(b, 3, r, r),), {})


def main():
    names = sys.argv[1:] or list(CASES)
    for name in names:
        try:
            r = run_case(name)
            status = "OK" if r["eager_calls"] == 0 and r["variants"] == 1 and not r["fallbacks"] else "NOTE"
            print(f"{status:5} {name}: {r}", flush=True)
        except Exception as e:  # noqa: BLE001 - a probe reports every failure and goes on
            print(f"FAIL  {name}: {type(e).__name__}: {str(e)[:600]}", flush=True)
            if "-v" in sys.argv or len(names) == 1:
                traceback.print_exc()


if __name__ == "__main__":
    main()
