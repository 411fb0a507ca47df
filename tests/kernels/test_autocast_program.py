"""``torch.autocast`` through the Program executor (the CUDA default: generated kernels, here on
Triton's CPU interpreter) and through saved artifacts; the reference executor's checks are in
``tests/unit/test_autocast.py``, whose bar (eager autocast's error, doubled, plus one rounding) is
used here too."""

import pytest
import torch

import blade
from tests.unit.test_autocast import _Mlp, check_generated_under_autocast

SEEDS = range(40, 52)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_generated_networks_under_autocast_as_programs(dtype):
    check_generated_under_autocast(SEEDS, "cpu", dtype, blade.Config(executor="program", kernel_cache_dir=None))


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
