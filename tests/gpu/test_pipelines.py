"""Unmodified diffusers pipelines with Blade's UNet on the GPU: full public configs, random
weights, fp16, prompt embeddings passed directly (no tokenizer files), two resolutions each.
Images match eager within the fp16 bar (error against a float32 pipeline at most twice eager
fp16's), and no call compiles after the first of the guard class."""

import pytest
import torch

from tests.pipelines import check_pipeline

pytestmark = pytest.mark.gpu

RESOLUTIONS = {
    "sd": [(512, 512), (768, 640)],
    "img2img": [(512, 512), (640, 768)],
    "controlnet": [(512, 512), (768, 512)],
    "sdxl": [(1024, 1024), (768, 1024)],
}


@pytest.mark.parametrize("kind", list(RESOLUTIONS))
def test_pipeline_fp16(kind):
    for line in check_pipeline(kind, RESOLUTIONS[kind], torch.float16, "cuda", tiny=False):
        print(line)
