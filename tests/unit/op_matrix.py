"""Small modules that together cover the ATen ops Blade lowers (shared by several tests).

Each case: a module factory, an input factory ``make(b, n)`` giving inputs for a batch ``b`` and
a "length" ``n`` (spatial size or sequence length), and the (b, n) pairs to run.
"""

import torch
import torch.nn.functional as F

SIZES = [(2, 12), (1, 7), (3, 17)]  # batch 1 and 3, odd sizes, not multiples of 8


class ConvBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.norm = torch.nn.GroupNorm(4, 8)

    def forward(self, x):
        h = F.silu(self.norm(self.conv(x)))
        return self.down(h) * 0.5 + 1.0


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(16, 48)
        self.out = torch.nn.Linear(16, 16)
        self.ln = torch.nn.LayerNorm(16)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, 2, 8).transpose(1, 2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out(o.transpose(1, 2).reshape(b, n, c)) + x


class Geglu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(16, 64)

    def forward(self, x):
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate) + F.gelu(a, approximate="tanh")


class Elementwise(torch.nn.Module):
    def forward(self, x):
        y = torch.exp(-x.abs()) + torch.sqrt(x * x + 1) - torch.rsqrt(x * x + 2) * torch.tanh(x)
        y = torch.where(x > 0, y, torch.sigmoid(x)).clamp(-3, 3)
        y = torch.maximum(y, torch.sin(x)) / (torch.cos(x) + 3) + torch.log1p(x.abs()).relu()
        return y.masked_fill(x < -1, 0.25) ** 2


class Reductions(torch.nn.Module):
    def forward(self, x):
        s = x.sum(dim=-1, keepdim=True) + x.mean(dim=(1, 2), keepdim=True)
        m = x.amax(dim=1) - x.amin(dim=1)
        return torch.softmax(x - s, dim=-1), torch.log_softmax(x, dim=1), m, x.argmax(dim=-1)


class Shapes(torch.nn.Module):
    def forward(self, x):
        b, c, n = x.shape
        y = x.permute(0, 2, 1).reshape(b * n, c).unsqueeze(0)
        z = torch.cat([x, x[:, :, 1:], x[:, :, :1]], dim=2)
        w = F.pad(x, (1, 2), value=-1.0)
        s = torch.stack([x[:, 0], x[:, -1]], dim=1).flatten(1)
        return y.squeeze(0), z, w, s, x[:, 1].expand(2, b, n), x.narrow(2, 1, 2)


class Upsample(torch.nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2.0, mode="nearest") + 1


class Sources(torch.nn.Module):
    def forward(self, x):
        b, n = x.shape
        pos = torch.arange(n, dtype=torch.float32)
        mask = torch.full((n, n), float("-inf")).triu(1)
        return x + pos, torch.zeros_like(x) + torch.ones(b, 1), mask.shape[0] + x


class Embedding(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 8)

    def forward(self, ids):
        h = self.emb(ids)
        pooled = h[torch.arange(h.shape[0]), ids.argmax(dim=-1)]
        return h, pooled, (ids == 3).to(torch.float32)


class Matmuls(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(16, 8))

    def forward(self, x):
        y = x @ self.w
        z = torch.bmm(y, y.transpose(1, 2))
        return torch.baddbmm(z, y, y.transpose(1, 2), beta=0.5, alpha=2.0), torch.addmm(self.w[0], x[0], self.w)


CASES = {
    "conv_block": (ConvBlock, lambda b, n: (torch.randn(b, 4, n, n + 3),)),
    "attention": (Attention, lambda b, n: (torch.randn(b, n, 16),)),
    "geglu": (Geglu, lambda b, n: (torch.randn(b, n, 16),)),
    "elementwise": (Elementwise, lambda b, n: (torch.randn(b, n, 5),)),
    "reductions": (Reductions, lambda b, n: (torch.randn(b, 6, n),)),
    "shapes": (Shapes, lambda b, n: (torch.randn(b, 3, n),)),
    "upsample": (Upsample, lambda b, n: (torch.randn(b, 2, n, n + 1),)),
    "sources": (Sources, lambda b, n: (torch.randn(b, n),)),
    "embedding": (Embedding, lambda b, n: (torch.randint(0, 50, (b, n)),)),
    "matmuls": (Matmuls, lambda b, n: (torch.randn(b, n, 16),)),
}
