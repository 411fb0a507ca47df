"""``Config(enable_fp16=True, prepare_weights=True)`` on a float32 model: the kernel executor casts each weight once
(``convert-fp16`` puts each weight's cast in a fused group of its own, which
``KernelExecutor._prepared_group`` runs once and keeps), not on every call, and an in-place weight update is copied
into the cast before the next call (and before a CUDA graph replay, which runs no Python)."""

import torch
import torch.nn.functional as F

import blade


class ConvLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x):
        h = F.silu(self.conv(x))
        return self.lin(h.permute(0, 2, 3, 1)) + 1


def test_weights_are_cast_once_and_refreshed_after_in_place_updates():
    torch.manual_seed(0)
    m = ConvLinear().eval()
    opt = blade.optimize(m, (torch.randn(2, 4, 6, 6),), config=blade.Config(enable_fp16=True, executor="kernels",
                                                                         prepare_weights=True))
    ex = opt.variants[0].executor

    def check(shape):
        x = torch.randn(shape)
        with torch.no_grad():
            want = m(x)
            got = opt(x)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)

    check((2, 4, 6, 6))
    casts = {k: e[3][0] for k, e in ex._casts.items()}
    assert {id(m.conv.weight), id(m.lin.weight)} <= {k[0][0] for k in casts}, list(casts)
    launches = ex.launchers[next(iter(ex.launchers))].stats.launches
    check((1, 4, 5, 7))
    assert all(ex._casts[k][3][0] is t for k, t in casts.items())  # cast once, the same tensors reused
    assert ex.launchers[next(iter(ex.launchers))].stats.launches - launches == launches - len(casts)
    with torch.no_grad():
        m.conv.weight.mul_(-3)
        m.lin.bias.add_(2)
    check((3, 4, 6, 6))
    assert all(ex._casts[k][3][0] is t for k, t in casts.items())  # refreshed in place
    assert opt.eager_calls == 0


def test_by_default_weights_are_cast_every_call_and_data_updates_are_seen():
    """Without prepare_weights an update written through ``.data`` in place (PEFT's default LoRA
    merge), which changes neither the version nor the storage, is seen by the next call."""
    torch.manual_seed(0)
    m = ConvLinear().eval()
    opt = blade.optimize(m, (torch.randn(2, 4, 6, 6),), config=blade.Config(enable_fp16=True, executor="kernels"))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(opt(x), m(x), rtol=2e-2, atol=2e-2)
        m.lin.weight.data += 1.0
        m.conv.weight.data *= -1.0
        torch.testing.assert_close(opt(x), m(x), rtol=2e-2, atol=2e-2)
    assert not opt.variants[0].executor._casts
