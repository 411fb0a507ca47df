"""GPU guard classes (skipped without CUDA): the guards that only the CUDA path records.

- SDPA's backend selection on CUDA asks ``batch != 1``; Blade traces the op with those guards
  suppressed (frontend/export.py), so batch 1 is served by the variant compiled at batch 2.
- diffusers' Upsample2D compares scale ratios in true division; the 65x89 latent must land in a
  variant whose guards accept it (they were read as floor division before).
"""

import pytest
import torch
import torch.nn.functional as F

import blade
from tests.unit.test_guards import _UpsampleToSize

pytestmark = pytest.mark.gpu
DEV = "cuda"


class _Attention(torch.nn.Module):
    def __init__(self, dim=64, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.out = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.out(o.transpose(1, 2).reshape(b, n, c))


def test_batch_one_reuses_the_batch_two_variant_with_sdpa():
    m = _Attention().to(DEV).half().eval()
    opt = blade.optimize(m, (torch.randn(2, 17, 64, device=DEV, dtype=torch.float16),))
    assert not opt._variants[0].executor.table.guards, [str(g.cond) for g in opt._variants[0].executor.table.guards]
    for b, n in [(1, 17), (1, 5), (3, 9)]:
        x = torch.randn(b, n, 64, device=DEV, dtype=torch.float16)
        with torch.no_grad():
            torch.testing.assert_close(opt(x).float(), m(x).float(), rtol=2e-2, atol=2e-2)
    assert len(opt._variants) == 1


def test_odd_latent_variant_accepts_its_call():
    m = _UpsampleToSize(4).to(DEV).half().eval()  # diffusers' Upsample2D path for odd latents
    opt = blade.optimize(m, (torch.randn(2, 4, 64, 64, device=DEV, dtype=torch.float16),))
    x = torch.randn(3, 4, 65, 89, device=DEV, dtype=torch.float16)
    with torch.no_grad():
        torch.testing.assert_close(opt(x).float(), m(x).float(), rtol=2e-2, atol=2e-2)
    n = len(opt._variants)
    assert n <= 2
    opt(torch.randn(1, 4, 65, 89, device=DEV, dtype=torch.float16))
    assert len(opt._variants) == n  # the variant compiled for 65x89 accepts it again
