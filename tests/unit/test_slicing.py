"""Python slice semantics on symbolic dims, read and written: ``x[:, a:b:c]`` and
``h[:, a:b:c] = v`` for starts and ends that are negative, past the end or missing, compiled at one
size and called at every size from 1 to 9 (a dim shorter than the start's distance from the end:
``x[:, -2:]`` of a dim of 1 starts at 0, as Python clamps it; an empty slice; a write of no rows).
Generated: 40 drawn (start, end, step) triples."""

import random

import pytest
import torch

import blade

BOUNDS = [None, 0, 1, 2, 3, -1, -2, -3, -6, 100, -100]


def draw(seed: int) -> tuple:
    rng = random.Random(seed)
    return rng.choice(BOUNDS), rng.choice(BOUNDS), rng.choice([1, 1, 2, 3])


class Slices(torch.nn.Module):
    def __init__(self, start, end, step):
        super().__init__()
        self.sl = slice(start, end, step)

    def forward(self, x):
        read = x[:, self.sl] * 2.0
        h = x * 3.0
        h[:, self.sl] = -1.0
        return read, h


@pytest.mark.parametrize("seed", range(40))
def test_generated_slices_read_and_write_like_python(seed):
    start, end, step = draw(seed)
    model = Slices(start, end, step).eval()
    opt = blade.optimize(model, (torch.randn(2, 7, 3),))
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported, unsupported
    for n in range(1, 10):
        x = torch.randn(2, n, 3)
        with torch.no_grad():
            got, want = opt(x), model(x)
        for g, w in zip(got, want):
            assert g.shape == w.shape, f"[{start}:{end}:{step}] at {n}: {tuple(g.shape)} vs {tuple(w.shape)}"
            torch.testing.assert_close(g, w, msg=lambda m: f"[{start}:{end}:{step}] at {n}: {m}")
    assert opt.eager_calls == 0
