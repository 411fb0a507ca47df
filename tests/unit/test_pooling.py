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
