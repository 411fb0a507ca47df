"""Transposed convolutions (``nn.ConvTranspose1d/2d/3d``, ``F.conv_transpose*``) compile to
``blade.conv_transpose`` instead of running in eager PyTorch.

Generated: each seed draws a rank (1-3 spatial dims), channels, groups, kernel, stride, padding,
output padding (below the stride or the dilation, as torch requires), dilation and bias, and a
consumer chain (GroupNorm + SiLU where the channels allow, an elementwise residual of the input
upsampled where the sizes line up); the module is compiled once and checked against eager at three
more input sizes (batch 1 and 3, odd sizes). The same through the Program executor with generated
kernels: ``tests/kernels/test_op_coverage_kernels.py``.
"""

import random

import pytest
import torch
import torch.nn.functional as F

import blade

SEEDS = range(36)


def draw(seed: int) -> dict:
    rng = random.Random(seed)
    nsp = rng.choice([1, 2, 2, 2, 3])
    groups = rng.choice([1, 1, 2])
    cin = groups * rng.choice([1, 2, 3])
    cout = groups * rng.choice([1, 2, 4])
    stride = rng.choice([1, 2, 2, 3])
    dilation = rng.choice([1, 1, 2])
    kernel = rng.choice([1, 2, 3, 4])
    padding = rng.randint(0, (dilation * (kernel - 1)) // 2)
    output_padding = rng.randint(0, max(stride, dilation) - 1)
    return dict(nsp=nsp, cin=cin, cout=cout, groups=groups, kernel=kernel, stride=stride, padding=padding,
                output_padding=output_padding, dilation=dilation, bias=rng.random() < 0.7,
                norm=cout % 2 == 0 and rng.random() < 0.6, functional=rng.random() < 0.25)


class Up(torch.nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.c = c
        cls = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[c["nsp"]]
        self.up = cls(c["cin"], c["cout"], c["kernel"], stride=c["stride"], padding=c["padding"],
                      output_padding=c["output_padding"], groups=c["groups"], bias=c["bias"],
                      dilation=c["dilation"])
        self.norm = torch.nn.GroupNorm(2, c["cout"]) if c["norm"] else None

    def forward(self, x):
        c = self.c
        if c["functional"]:
            fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[c["nsp"]]
            y = fn(x, self.up.weight, self.up.bias, c["stride"], c["padding"], c["output_padding"], c["groups"],
                   c["dilation"])
        else:
            y = self.up(x)
        if self.norm is not None:
            y = F.silu(self.norm(y))
        return y * 0.5 + 1.0


def sizes(c: dict, batch: int, base: int) -> tuple:
    spatial = [base, base + 3, base + 1][:c["nsp"]]
    return (batch, c["cin"], *spatial)


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_transposed_convolutions_compile_and_match_eager(seed):
    c = draw(seed)
    torch.manual_seed(seed)
    model = Up(c).eval()
    opt = blade.optimize(model, (torch.randn(*sizes(c, 2, 5)),))
    assert opt.variants, f"{c}: not compiled"
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported, f"{c}: eager fallbacks {unsupported}"
    for batch, base in [(2, 5), (1, 3), (3, 7), (1, 6)]:
        x = torch.randn(*sizes(c, batch, base))
        with torch.no_grad():
            got, want = opt(x), model(x)
        assert got.shape == want.shape, f"{c} at {tuple(x.shape)}: {tuple(got.shape)} vs eager {tuple(want.shape)}"
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"{c} at {tuple(x.shape)}: {m}")
    assert opt.eager_calls == 0


def test_output_size_is_symbolic_in_the_input_size():
    model = torch.nn.ConvTranspose2d(3, 5, 4, stride=2, padding=1).eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 6, 9),))
    assert "output shapes: [s0, 5, 2*s1, 2*s2]" in opt.report.format()
