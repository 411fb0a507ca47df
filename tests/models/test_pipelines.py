"""Unmodified diffusers pipelines (SD, img2img, ControlNet, SDXL) with Blade's UNet, on the CPU with
small configs of the same structure: the pipeline's own call pattern (keywords, return_dict=False,
added_cond_kwargs, ControlNet residuals) is served by one compile at two resolutions and the
images match eager. The full-size fp16 versions run in tests/gpu/test_pipelines.py."""

import pytest
import torch

from tests.pipelines import check_pipeline


@pytest.mark.parametrize("kind", ["sd", "img2img", "controlnet", "sdxl"])
def test_pipeline_with_blade_unet(kind):
    for line in check_pipeline(kind, [(128, 128), (128, 192)], torch.float32, "cpu", tiny=True):
        print(line)
