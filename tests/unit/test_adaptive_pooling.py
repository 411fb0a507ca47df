"""Adaptive average and max pooling to a fixed output size (``AdaptiveAvgPool2d((7, 7))`` in VGG's
and AlexNet's heads, the pyramid pooling of PSPNet and UperNet to 1, 2, 3, 6) compile for input
sizes that stay symbolic: each output position pools the rows PyTorch's windows give it
(``frontend/aten_windows._adaptive_pool``).

Generated: each seed draws the pooled rank (1-3), the output size per dim (1 to 7: below, equal to
and above the input sizes, where windows overlap), average or max, and inputs holding an inf and
a NaN now and then (they must stay inside their own windows); compiled once, checked against eager
at four input sizes (batch 1 and 3, odd sizes, a size-1 dim)."""

import random

import pytest
import torch
import torch.nn.functional as F

import blade

SEEDS = range(40)
AVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
MAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}


def draw(seed: int) -> dict:
    rng = random.Random(seed)
    rank = rng.choice([1, 2, 2, 2, 3])
    return dict(rank=rank, out=[rng.randint(1, 7) for _ in range(rank)], average=rng.random() < 0.6,
                specials=rng.random() < 0.3, channels=rng.randint(1, 4))


class Pool(torch.nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.c = c

    def forward(self, x):
        fn = (AVG if self.c["average"] else MAX)[self.c["rank"]]
        return fn(x * 2.0, self.c["out"]) + 1.0


def inputs(c: dict, batch: int, sizes: list[int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c["channels"], *sizes[:c["rank"]], generator=g)
    if c["specials"] and x.numel() > 2:
        flat = x.view(-1)
        flat[seed % flat.numel()] = float("inf")
        flat[(seed * 7 + 1) % flat.numel()] = float("nan")
    return x


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_adaptive_pooling_compiles_and_matches_eager(seed):
    c = draw(seed)
    model = Pool(c).eval()
    opt = blade.optimize(model, (inputs(c, 2, [9, 12, 6], seed),))
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported, f"{c}: eager fallbacks {unsupported}"
    for i, (batch, sizes) in enumerate([(2, [9, 12, 6]), (1, [5, 7, 3]), (3, [13, 4, 8]), (1, [1, 11, 2])]):
        x = inputs(c, batch, sizes, seed + i)
        with torch.no_grad():
            got, want = opt(x), model(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True,
                                   msg=lambda m: f"{c} at {tuple(x.shape)}: {m}")
    assert opt.eager_calls == 0


def test_max_pooling_whose_indices_are_used_runs_eagerly_and_says_so():
    class Both(torch.nn.Module):
        def forward(self, x):
            values, indices = F.adaptive_max_pool2d(x, 3, return_indices=True)
            return values, indices

    model = Both().eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 10, 9),))
    reasons = [u.reason for u in opt.report.unsupported]
    assert any("indices are used" in r for r in reasons), reasons
    x = torch.randn(1, 3, 7, 11)
    got, want = opt(x), model(x)
    assert torch.equal(got[1], want[1]) and torch.equal(got[0], want[0])
