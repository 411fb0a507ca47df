"""The plain torch.nn cases of ``benchmarks/probe_heldout.py`` (each registers itself with ``case``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from probe_registry import case

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
