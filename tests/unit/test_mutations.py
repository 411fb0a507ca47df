"""Modules that write their inputs or buffers in place (``x.add_(1)``, ``y[:, 0] = 0``, a call
counter, a running average kept in a buffer) compile: export's functional program returns
the new values, the compiled program computes them as extra results and Blade copies them into the
caller's tensors and the module's buffers after each call, so both end as eager leaves them. These
modules used to run whole in eager PyTorch. ``tests/kernels/test_mutations_program.py`` runs the
same through Programs; saving such a module is refused (``blade.load`` would not write back)."""

import pytest
import torch

import blade


class WritesInputs(torch.nn.Module):
    def forward(self, x, y):
        x.add_(1)
        y[:, 0] = 0
        return x * y


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(1))

    def forward(self, x):
        self.count += 1
        return x * self.count


class ScaledByInt(torch.nn.Module):
    def forward(self, x, k: int):
        x.mul_(k)
        return x + 1


class RunningMean(torch.nn.Module):
    """A buffer updated from the activations (an exponential average of each channel) and read
    back in the same call, in eval mode."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("avg", torch.zeros(4))

    def forward(self, x):
        h = self.conv(x)
        self.avg.mul_(0.9).add_(h.mean(dim=(0, 2, 3)), alpha=0.1)
        return torch.relu(h - self.avg[None, :, None, None])


def _same(a, b, atol=1e-5):
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, atol=atol, rtol=1e-5)


def _calls(m, opt, make, shapes, atol=1e-5):
    for shape in shapes:
        xs = make(shape)
        mine = [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]
        theirs = [x.clone() if isinstance(x, torch.Tensor) else x for x in xs]
        got, want = opt(*mine), m(*theirs)
        _same(got, want, atol)
        for a, b in zip(mine, theirs):
            if isinstance(a, torch.Tensor):
                _same(a, b)  # the inputs are written as eager writes them


def run_cases(executor: str) -> None:
    torch.manual_seed(0)
    m = WritesInputs()
    make = lambda s: (torch.randn(*s), torch.randn(*s))  # noqa: E731
    opt = blade.optimize(m, make((2, 4)), config=blade.Config(executor=executor, fallback="strict"))
    _calls(m, opt, make, [(2, 4), (1, 7), (3, 1), (5, 3)])
    assert opt.eager_calls == 0 and opt.variants

    m1, m2 = Counter(), Counter()
    opt = blade.optimize(m1, (torch.ones(3),), config=blade.Config(executor=executor, fallback="strict"))
    for n in (3, 1, 5, 3):
        x = torch.randn(n)
        _same(opt(x), m2(x))
        _same(m1.count, m2.count)
    assert m1.count.item() == 4 and opt.eager_calls == 0

    m = ScaledByInt()
    opt = blade.optimize(m, (torch.randn(2, 3), 2), config=blade.Config(executor=executor, fallback="strict"))
    for shape, k in [((2, 3), 3), ((1, 5), 7), ((3, 2), 2)]:
        a, b = torch.randn(*shape), None
        b = a.clone()
        _same(opt(a, k), m(b, k))
        _same(a, b)
    assert opt.eager_calls == 0

    m1, m2 = RunningMean().eval(), RunningMean().eval()
    m2.load_state_dict(m1.state_dict())
    opt = blade.optimize(m1, (torch.randn(2, 3, 6, 6),), config=blade.Config(executor=executor, fallback="strict"))
    for shape in [(2, 3, 6, 6), (3, 3, 5, 7), (1, 3, 6, 6)]:
        x = torch.randn(*shape)
        _same(opt(x), m2(x).detach(), atol=1e-4)
        _same(m1.avg, m2.avg)
    assert m1.avg.abs().sum() > 0 and opt.eager_calls == 0


def test_in_place_writes_compile():
    run_cases("reference")


def test_saving_a_module_that_writes_in_place_is_refused(tmp_path):
    opt = blade.optimize(Counter(), (torch.ones(3),))
    opt(torch.ones(3))
    with pytest.raises(ValueError, match="writes its inputs or buffers in place"):
        blade.save(opt, tmp_path / "m")


class _ViewThenWrite(torch.nn.Module):
    """Generated seed 1002's pattern: a result that is a view of the input once ``* k`` with
    ``k == 1`` folds away, computed before the input is written in place."""

    def forward(self, x, k: int):
        v = x.unsqueeze(0) * k
        x.clamp_(-0.5, 0.5)
        return v, x * 1.0


@pytest.mark.parametrize("k", [1, 3])
def test_a_result_viewing_a_written_input_keeps_its_values(k):
    m = _ViewThenWrite()
    x = torch.randn(2, 16)
    opt = blade.optimize(m, (x.clone(), k))
    for _ in range(2):
        x = torch.randn(2, 16)
        mine, theirs = x.clone(), x.clone()
        got, want = opt(mine, k), m(theirs, k)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
        torch.testing.assert_close(mine, theirs)
        assert got[0].abs().max() > 0.5  # the values from before the clamp
