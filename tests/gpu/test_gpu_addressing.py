"""GPU tests (skipped without CUDA) of issue 8's illegal memory access: SD 2.x-like and SDXL-like
UNets (``use_linear_projection``, per-block head counts, ``upcast_attention``; ``text_time``
added conditioning, two transformer layers per block) through generated kernels in fp16, with and
without ``Config(bounds_check=True)``, at three shapes each, against eager.

The fp16 bar: error against a float32 reference at most twice eager fp16's error. To run every
GPU test with bounds checks compiled in: ``pytest tests/gpu --bounds-check`` (tests/conftest.py).
"""

import pytest
import torch

import blade
from tests.gpu.helpers import ran_generated_kernels

pytestmark = pytest.mark.gpu
DEV = "cuda"

BASE = dict(sample_size=32, in_channels=4, out_channels=4, block_out_channels=(64, 128, 128), layers_per_block=2,
            norm_num_groups=32, cross_attention_dim=64, use_linear_projection=True)
FAMILIES = {
    "sd2": dict(BASE, attention_head_dim=[1, 2, 4], upcast_attention=True,
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "sdxl": dict(BASE, attention_head_dim=[1, 2, 4], addition_embed_type="text_time", addition_time_embed_dim=16,
                 projection_class_embeddings_input_dim=32 + 6 * 16, transformer_layers_per_block=[1, 2, 2],
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")),
}


def _inputs(family, b, h, w, dtype):
    g = torch.Generator(device=DEV).manual_seed(100 * b + h)
    args = (torch.randn(b, 4, h, w, generator=g, device=DEV, dtype=dtype), torch.tensor(10.0, device=DEV),
            torch.randn(b, 77, 64, generator=g, device=DEV, dtype=dtype))
    if family == "sd2":
        return args, {}
    return args, {"added_cond_kwargs": {"text_embeds": torch.randn(b, 32, generator=g, device=DEV, dtype=dtype),
                                        "time_ids": torch.randn(b, 6, generator=g, device=DEV, dtype=dtype)}}


def _to32(args, kwargs):
    cast = lambda t: t.float() if torch.is_tensor(t) else {k: cast(v) for k, v in t.items()}  # noqa: E731
    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


@pytest.mark.parametrize("bounds_check", [False, True])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_linear_projection_unets_on_the_gpu(family, bounds_check):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    m32 = UNet2DConditionModel(**FAMILIES[family]).to(DEV).eval()
    m16 = UNet2DConditionModel(**FAMILIES[family]).to(DEV, torch.float16).eval()
    m16.load_state_dict({k: v.half() for k, v in m32.state_dict().items()})
    args, kwargs = _inputs(family, 2, 32, 32, torch.float16)
    opt = blade.optimize(m16, args, model_kwargs=kwargs,
                         config=blade.Config(bounds_check=bounds_check, conv_algorithm_search=False,
                                             convert_weights_in_place=False))
    for b, h, w in [(2, 32, 32), (1, 24, 40), (3, 16, 48)]:
        args, kwargs = _inputs(family, b, h, w, torch.float16)
        a32, k32 = _to32(args, kwargs)
        with torch.no_grad():
            out = opt(*args, **kwargs).sample
            ref16 = m16(*args, **kwargs).sample
            ref32 = m32(*a32, **k32).sample
        torch.cuda.synchronize()  # an illegal access surfaces here, naming nothing: fail on this shape
        err = (out.float() - ref32).abs().max().item()
        eager = (ref16.float() - ref32).abs().max().item()
        assert err <= 2 * eager + 1e-6, f"{family} {(b, h, w)}: blade error {err:.3e} vs eager fp16 {eager:.3e}"
    assert ran_generated_kernels(opt)
