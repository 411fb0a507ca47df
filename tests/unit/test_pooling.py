"""Pooling and eval-mode batch norm (ResNet's stem and every conv block): max pooling compiles to
strided slices of the padded input and their maximum, batch norm to one multiply-add per
channel, global average pooling to a mean; all match eager at several shapes with one compile."""

import pytest
import torch

import blade


class Stem(torch.nn.Module):
    def __init__(self, k, stride, pad):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.pool = torch.nn.MaxPool2d(k, stride, pad)
        with torch.no_grad():
            self.bn.running_mean.normal_(0, 0.5)
            self.bn.running_var.uniform_(0.5, 2.0)
            self.bn.weight.uniform_(0.5, 1.5)
            self.bn.bias.normal_(0, 0.1)

    def forward(self, x):
        y = self.pool(torch.relu(self.bn(self.conv(x))))
        return y, torch.nn.functional.adaptive_avg_pool2d(y, 1)


@pytest.mark.parametrize("k,stride,pad", [(3, 2, 1), (2, 2, 0), (3, 1, 1), (2, 3, 0)])
def test_stem_compiles_without_fallback(k, stride, pad):
    model = Stem(k, stride, pad).eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 16, 16),),
                         config=blade.Config(check_shapes=True, fallback="strict"))
    for shape in [(1, 3, 9, 13), (3, 3, 16, 16), (2, 3, 7, 5), (1, 3, 3, 3)]:
        x = torch.randn(*shape)
        for out, ref in zip(opt(x), model(x)):
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert len(opt.variants) == 1


def _draw_pool(seed: int) -> dict:
    import random

    rng = random.Random(seed)
    k = (rng.randint(1, 4), rng.randint(1, 4))
    k = (k[0], min(k[1], 16 // k[0]))
    return dict(average=rng.random() < 0.55, kernel=k, stride=(rng.randint(1, 3), rng.randint(1, 3)),
                padding=(rng.randint(0, k[0] // 2), rng.randint(0, k[1] // 2)), ceil_mode=rng.random() < 0.7,
                count_include_pad=rng.random() < 0.5,
                divisor_override=rng.choice([None, None, None, 3]))


class _Pool(torch.nn.Module):
    def __init__(self, c: dict):
        super().__init__()
        self.c = c

    def forward(self, x):
        c = self.c
        if c["average"]:
            y = torch.nn.functional.avg_pool2d(x, c["kernel"], c["stride"], c["padding"], c["ceil_mode"],
                                               c["count_include_pad"], c["divisor_override"])
        else:
            y = torch.nn.functional.max_pool2d(x, c["kernel"], c["stride"], c["padding"], ceil_mode=c["ceil_mode"])
        return y * 2.0 - 1.0


@pytest.mark.parametrize("seed", range(48))
def test_generated_pooling_with_ceil_mode_compiles_and_matches_eager(seed):
    """Max and average pooling over drawn kernels, strides, paddings, ``ceil_mode`` (the last
    window may run past the padded input: timm's ResNet-D shortcut pool, GoogLeNet's max pools),
    ``count_include_pad`` and ``divisor_override``, at five input sizes from one compile."""
    c = _draw_pool(seed)
    model = _Pool(c).eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 11, 14),))
    unsupported = [u.target for v in opt.variants for u in v.program.report.unsupported]
    assert not unsupported, f"{c}: eager fallbacks {unsupported}"
    refused = 0
    for shape in [(2, 3, 11, 14), (1, 3, 7, 9), (3, 2, 8, 8), (1, 1, 5, 6), (2, 3, 13, 10)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            try:
                want = model(x)
            except RuntimeError:  # eager refuses (an output size below 1): so must the compiled module
                with pytest.raises(RuntimeError):
                    opt(x)
                refused += 1
                continue
            got = opt(x)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"{c} at {shape}: {m}")
    assert opt.eager_calls == refused


@pytest.mark.parametrize("average,ceil_mode,divisor,kernel", [
    (True, True, None, 9), (True, True, 7, 9), (False, True, None, 9), (True, False, None, 7), (False, False, None, 7)])
def test_one_window_over_the_whole_input_is_a_mean_or_max(average, ceil_mode, divisor, kernel):
    """EfficientNet's head pools its 7x7 map with ``AvgPool2d(1280, ceil_mode=True)``: one window
    over the whole input, a mean (or max) over the spatial dims while the input fits in the kernel
    (guards), and eager's own pooling in another variant for inputs that do not (without
    ``ceil_mode`` an 8x9 input still gives one window, over its first 7x7 only)."""
    class Head(torch.nn.Module):
        def forward(self, x):
            if average:
                return torch.nn.functional.avg_pool2d(x, kernel, ceil_mode=ceil_mode, divisor_override=divisor) + 1
            return torch.nn.functional.max_pool2d(x, kernel, ceil_mode=ceil_mode) + 1

    model = Head().eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 7, 7),))
    assert not opt.report.unsupported, opt.report.unsupported
    shapes = [(2, 3, 7, 7), (1, 3, 9, 4), (3, 2, 1, 1), (1, 1, 12, 3)] if ceil_mode else [(2, 3, 7, 7), (1, 2, 8, 9)]
    for shape in shapes + [(2, 3, 7, 7)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(opt(x), model(x), msg=lambda m: f"{shape}: {m}")
    assert opt.eager_calls == 0
