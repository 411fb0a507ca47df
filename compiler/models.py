"""Built-in Stable Diffusion 1.5 models: public configs, random weights.

No weights can be downloaded where Blade is developed and tested, so the demo, the model tests
and the benchmarks build the real architectures from their published configs and fill them with
random weights (speed, memory and numerics depend on the architecture and the value scale, not on
trained values). Construction skips the libraries' own (slow) initialisation and draws weights
like PyTorch's default ``Linear``/``Conv`` init, which keeps activations well scaled.

Needs ``diffusers`` and ``transformers`` (``pip install blade[models]``).
"""

from __future__ import annotations

import contextlib

import torch

SD15_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
)

SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=[128, 256, 512, 512], norm_num_groups=32, act_fn="silu",
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    sample_size=512,
)

SD15_CLIP = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
    projection_dim=768,
)

_INIT_FUNCTIONS = ["uniform_", "normal_", "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_",
                   "xavier_normal_", "zeros_", "ones_", "constant_", "trunc_normal_"]


@contextlib.contextmanager
def _skip_library_init():
    saved = {n: getattr(torch.nn.init, n) for n in _INIT_FUNCTIONS}
    for n in _INIT_FUNCTIONS:
        setattr(torch.nn.init, n, lambda t, *a, **k: t)
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


@torch.no_grad()
def randomize(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """PyTorch-default-like random weights: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for linear and
    conv weights and biases, N(0, 0.02) for embeddings, ones/zeros for norm scale/shift."""
    torch.manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            bound = m.weight[0].numel() ** -0.5
            m.weight.uniform_(-bound, bound)
            if m.bias is not None:
                m.bias.uniform_(-bound, bound)
        elif isinstance(m, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
            if m.weight is not None:
                m.weight.fill_(1.0)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, torch.nn.Embedding):
            m.weight.normal_(0.0, 0.02)
    return module


def unet(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The SD 1.5 UNet (860M parameters)."""
    from diffusers import UNet2DConditionModel

    with _skip_library_init():
        m = UNet2DConditionModel(**SD15_UNET)
    return randomize(m).to(device=device, dtype=dtype).eval()


class VaeDecode(torch.nn.Module):
    """``vae.decode(z).sample`` as a module: post-quant conv plus the decoder."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.post_quant_conv = vae.post_quant_conv
        self.decoder = vae.decoder

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


def vae_decoder(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The SD 1.5 VAE decode path (latent [B, 4, h, w] -> image [B, 3, 8h, 8w])."""
    from diffusers import AutoencoderKL

    with _skip_library_init():
        vae = AutoencoderKL(**SD15_VAE)
    return VaeDecode(randomize(vae)).to(device=device, dtype=dtype).eval()


def clip_text_encoder(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The SD 1.5 CLIP text encoder (ViT-L/14 text tower, 123M parameters)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    with _skip_library_init():
        m = CLIPTextModel(CLIPTextConfig(**SD15_CLIP))
    return randomize(m).to(device=device, dtype=dtype).eval()


def unet_inputs(batch: int = 2, height: int = 512, width: int = 512, seq: int = 77,
                dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu", seed: int = 1):
    """(latent, timestep, text context) for an image of ``height x width`` pixels."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x = torch.randn(batch, 4, height // 8, width // 8, generator=g).to(device, dtype)
    t = torch.tensor(999.0, device=device)
    ctx = torch.randn(batch, seq, 768, generator=g).to(device, dtype)
    return x, t, ctx


def vae_inputs(batch: int = 1, height: int = 512, width: int = 512, dtype: torch.dtype = torch.float32,
               device: str | torch.device = "cpu", seed: int = 1):
    g = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.randn(batch, 4, height // 8, width // 8, generator=g).to(device, dtype),)


def clip_inputs(batch: int = 2, seq: int = 77, device: str | torch.device = "cpu", seed: int = 1):
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, SD15_CLIP["vocab_size"] - 1, (batch, seq), generator=g)
    ids[:, -1] = SD15_CLIP["vocab_size"] - 1  # an end-of-text token, where pooling looks
    return (ids.to(device),)
