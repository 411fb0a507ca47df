"""``squeeze`` of an input dim that is 1 in some calls and not in others: eager drops the dim only
when it is 1, so Blade's output rank must follow the call, never the example (found by the
random-network generator, tests/generated)."""

import torch

import blade


class SqueezeChannel(torch.nn.Module):
    def forward(self, x):
        return (x > 0).squeeze(1), x.squeeze(1) * 2 + 1


def _check(opt, model, shape):
    x = torch.randn(*shape)
    for o, r in zip(opt(x), model(x)):
        assert o.shape == r.shape and o.dtype == r.dtype
        torch.testing.assert_close(o, r)


def test_example_dim_is_one_then_other_sizes():
    model = SqueezeChannel().eval()
    opt = blade.optimize(model, (torch.randn(2, 1, 6, 5),))
    for shape in [(2, 1, 6, 5), (1, 1, 3, 7), (3, 4, 5, 5)]:
        _check(opt, model, shape)


def test_example_dim_is_not_one_then_one():
    model = SqueezeChannel().eval()
    opt = blade.optimize(model, (torch.randn(2, 3, 6, 5),))
    for shape in [(2, 3, 6, 5), (3, 1, 4, 4), (1, 5, 2, 9)]:
        _check(opt, model, shape)
