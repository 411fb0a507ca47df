"""Integer floor division and remainder in generated kernels round like PyTorch (toward minus
infinity), not like C (toward zero): negative dividends and divisors (found by the network
generator, tests/generated: an integer ``%`` failed to compile for the kernel executor)."""

import torch

import blade


class IntDivision(torch.nn.Module):
    def forward(self, a, b):
        return (torch.remainder(a + 7, 5), a // 3, torch.remainder(a, b), torch.floor_divide(a, b), a % -4,
                (a * 2) // -3)


def test_integer_floor_division_and_remainder_match_eager():
    model = IntDivision().eval()
    a, b = torch.randint(-20, 20, (3, 7)), torch.randint(1, 6, (3, 7)) * (2 * torch.randint(0, 2, (3, 7)) - 1)
    opt = blade.optimize(model, (a, b), config=blade.Config(executor="kernels", kernel_cache_dir=None))
    for shape in [(3, 7), (1, 5), (4, 13)]:
        a = torch.randint(-20, 20, shape)
        b = torch.randint(1, 6, shape) * (2 * torch.randint(0, 2, shape) - 1)
        for o, r in zip(opt(a, b), model(a, b)):
            assert o.dtype == r.dtype
            torch.testing.assert_close(o, r, rtol=0, atol=0)
    assert opt.variants[0].program.launch_stats.launches > 0
