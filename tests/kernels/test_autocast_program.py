"""``torch.autocast`` through the Program executor (the CUDA default: generated kernels, here on
Triton's CPU interpreter) and through saved artifacts; the reference executor's checks are in
``tests/unit/test_autocast.py``, whose bar (eager autocast's error, doubled, plus one rounding) is
used here too."""

import pytest
import torch
import torch.nn.functional as F

import blade
from tests.generated.netgen import generate
from tests.unit.test_autocast import _check_against_eager

SEEDS = range(40, 52)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_generated_networks_under_autocast_as_programs(dtype):
    lowered = 0
    for seed in SEEDS:
        net = generate(seed)
        model, make = net.build()
        with torch.autocast("cpu", dtype=dtype):
            opt = blade.optimize(model, make(**net.probes[0], seed=100),
                                 config=blade.Config(executor="program", kernel_cache_dir=None))
        for p, probe in enumerate(net.probes):
            inputs = make(**probe, seed=p + 1)
            with torch.no_grad():
                reference = model(*inputs)
                with torch.autocast("cpu", dtype=dtype):
                    want, got = model(*inputs), opt(*inputs)
            try:
                lowered += _check_against_eager(net, got, want, reference)
            except AssertionError as e:
                raise AssertionError(f"generator seed {seed}, probe {probe}: {e}\n{net.source()}") from None
        assert opt.eager_calls == 0, f"seed {seed}: {opt.eager_calls} calls answered eagerly"
    assert lowered >= len(SEEDS) // 2


class _Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 16)
        self.b = torch.nn.Linear(16, 5)

    def forward(self, x):
        return self.b(F.gelu(self.a(x))) * 2


def test_saved_artifact_serves_only_its_autocast(tmp_path):
    torch.manual_seed(4)
    model = _Mlp().eval()
    x = torch.randn(2, 5, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        opt = blade.optimize(model, (x,))
    blade.save(opt, tmp_path / "m")
    loaded = blade.load(tmp_path / "m", model)
    with torch.no_grad():
        for shape in [(2, 5, 6), (1, 3, 6), (3, 7, 6)]:
            x = torch.randn(*shape)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                got, want = loaded(x), model(x)
            assert got.dtype == torch.bfloat16
            torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)
        with pytest.raises(Exception, match="autocast"):
            loaded(x)  # saved under autocast: a call outside it is refused, never answered in bfloat16
