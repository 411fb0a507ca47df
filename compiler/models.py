"""Built-in models: the SD 1.5 trio and a zoo of public architectures, random weights.

No weights can be downloaded where Blade is developed and tested, so the demo, the model tests
and the benchmarks build the real architectures from their published configs and fill them with
random weights (speed, memory and numerics depend on the architecture and the value scale, not on
trained values). Construction skips the libraries' own (slow) initialisation and draws weights
like PyTorch's default ``Linear``/``Conv`` init, which keeps activations well scaled.

Every zoo builder takes ``reduced=True`` for a small config with the same structure (the same
block types, attention layout, embeddings and heads; 1-2 layers, 16-64 channels) that the CPU
tests compile in seconds, and builds the full public config otherwise. ``ZOO`` lists each model
with its input maker and the shapes the tests serve.

Needs ``diffusers`` and ``transformers`` (``pip install blade[models]``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

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
        elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            # eval-mode statistics that are not the identity, so the tests see them applied
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.1, 0.1)
            m.running_mean.normal_(0.0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
        else:
            _randomize_own_parameters(m)
    return module


_COVERED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.GroupNorm,
            torch.nn.LayerNorm, torch.nn.Embedding, torch.nn.modules.batchnorm._BatchNorm)


def _randomize_own_parameters(m: torch.nn.Module) -> None:
    """Parameters of other modules (T5's RMS norm, ViT's class token and position embeddings)
    would keep ``torch.empty`` values once library init is skipped: norm scales get ones, biases
    zeros, anything else N(0, 0.02)."""
    norm_like = "norm" in type(m).__name__.lower()
    for name, p in m.named_parameters(recurse=False):
        if not p.is_floating_point():
            continue
        if norm_like and name == "weight":
            p.fill_(1.0)
        elif name == "bias":
            p.zero_()
        else:
            p.normal_(0.0, 0.02)


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


# ---------------------------------------------------------------------------------------------
# the zoo: full public configs and reduced ones with the same structure
# ---------------------------------------------------------------------------------------------

SD2_UNET = dict(SD15_UNET, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024,
                use_linear_projection=True, upcast_attention=True, sample_size=96)

SDXL_UNET = dict(
    act_fn="silu", addition_embed_type="text_time", addition_time_embed_dim=256,
    attention_head_dim=[5, 10, 20], block_out_channels=[320, 640, 1280], cross_attention_dim=2048,
    down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, norm_num_groups=32,
    out_channels=4, projection_class_embeddings_input_dim=2816, sample_size=128,
    transformer_layers_per_block=[1, 2, 10], use_linear_projection=True,
    up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
)

SD15_CONTROLNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
    conditioning_embedding_out_channels=[16, 32, 96, 256], cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], downsample_padding=1,
    flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2, norm_num_groups=32,
)

SDXL_CLIP2 = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
    num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280,
)

#: reduced configs: the same block types and attention layouts, a few channels and layers
_REDUCED_UNET = dict(block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                     down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                     up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
REDUCED = {
    "sd15_unet": dict(SD15_UNET, **_REDUCED_UNET, cross_attention_dim=32, attention_head_dim=4),
    "sd2_unet": dict(SD2_UNET, **_REDUCED_UNET, cross_attention_dim=48, attention_head_dim=[2, 4]),
    "sdxl_unet": dict(SDXL_UNET, block_out_channels=[32, 64, 64], layers_per_block=1, norm_num_groups=8,
                      attention_head_dim=[2, 4, 4], transformer_layers_per_block=[1, 1, 2],
                      cross_attention_dim=64, addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=32 + 6 * 8),
    "controlnet": dict(SD15_CONTROLNET, block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                       down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], cross_attention_dim=32,
                       attention_head_dim=4, conditioning_embedding_out_channels=[8, 8, 16, 16]),
    "vae": dict(SD15_VAE, block_out_channels=[32, 64], layers_per_block=1, norm_num_groups=8,
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2),
    "clip": dict(SD15_CLIP, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 vocab_size=1000, projection_dim=32),
    "clip2": dict(SDXL_CLIP2, hidden_size=40, intermediate_size=80, num_hidden_layers=2, num_attention_heads=5,
                  vocab_size=1000, projection_dim=24),
    "bert": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, vocab_size=1000, bos_token_id=999, eos_token_id=999),
    "vit": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8),
    "resnet": dict(embedding_size=8, hidden_sizes=[16, 24, 32, 48], depths=[1, 1, 2, 1]),
    "t5": dict(d_model=32, d_ff=64, d_kv=8, num_heads=4, num_layers=2, vocab_size=1000,
               relative_attention_num_buckets=8, relative_attention_max_distance=16),
}


def _finish(m: torch.nn.Module, dtype, device) -> torch.nn.Module:
    return randomize(m).to(device=device, dtype=dtype).eval()


def _unet_from(config: dict, dtype, device) -> torch.nn.Module:
    from diffusers import UNet2DConditionModel

    with _skip_library_init():
        m = UNet2DConditionModel(**config)
    return _finish(m, dtype, device)


def sd2_unet(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """An SD 2.1-style UNet: linear projections in and out of the transformers, per-block head
    counts (``attention_head_dim=[5, 10, 20, 20]``), 1024-wide text context, upcast attention."""
    return _unet_from(REDUCED["sd2_unet"] if reduced else SD2_UNET, dtype, device)


def sdxl_unet(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """The SDXL base UNet: three blocks (320/640/1280), 1/2/10 transformer layers per block,
    2048-wide context and the ``text_time`` added conditioning (pooled text + 6 time ids)."""
    return _unet_from(REDUCED["sdxl_unet"] if reduced else SDXL_UNET, dtype, device)


def controlnet(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """A ControlNet for SD 1.5 (diffusers ``ControlNetModel``), returning ``return_dict=False``'s
    tuple of down-block residuals and the mid-block residual."""
    from diffusers import ControlNetModel

    with _skip_library_init():
        m = ControlNetModel(**(REDUCED["controlnet"] if reduced else SD15_CONTROLNET))
    return _finish(m, dtype, device)


class VaeEncode(torch.nn.Module):
    """``vae.encode(x).latent_dist.mode()`` as a module: the encoder, quant conv and the mean of
    the latent distribution (sampling would draw random numbers)."""

    def __init__(self, vae: torch.nn.Module):
        super().__init__()
        self.encoder = vae.encoder
        self.quant_conv = vae.quant_conv

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        mean, _ = self.quant_conv(self.encoder(image)).chunk(2, dim=1)
        return mean


def _vae(reduced: bool):
    from diffusers import AutoencoderKL

    with _skip_library_init():
        return randomize(AutoencoderKL(**(REDUCED["vae"] if reduced else SD15_VAE)))


def vae_encoder(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """The SD 1.5 VAE encode path (image [B, 3, H, W] -> latent mean [B, 4, H/8, W/8])."""
    return VaeEncode(_vae(reduced)).to(device=device, dtype=dtype).eval()


def sdxl_clip2(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """SDXL's second text encoder: ``CLIPTextModelWithProjection`` (OpenCLIP ViT-bigG text tower:
    1280 wide, 32 layers, 20 heads, gelu, 1280-d projection)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    with _skip_library_init():
        m = CLIPTextModelWithProjection(CLIPTextConfig(**(REDUCED["clip2"] if reduced else SDXL_CLIP2)))
    return _finish(m, dtype, device)


def bert(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """BERT-base (transformers ``BertModel``, default config: 12 layers, 768 wide)."""
    from transformers import BertConfig, BertModel

    with _skip_library_init():
        m = BertModel(BertConfig(**(REDUCED["bert"] if reduced else {})))
    return _finish(m, dtype, device)


def gpt2(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """GPT-2 small (transformers ``GPT2Model``, default config). Its full-sequence forward returns
    the key/value cache as a ``DynamicCache`` (``use_cache`` defaults to True); the compiled module
    returns one too, holding the same tensors."""
    from transformers import GPT2Config, GPT2Model

    with _skip_library_init():
        m = GPT2Model(GPT2Config(**(REDUCED["gpt2"] if reduced else {})))
    return _finish(m, dtype, device)


def vit(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """ViT-base/16 at 224 px (transformers ``ViTModel``, default config, with the pooler)."""
    from transformers import ViTConfig, ViTModel

    with _skip_library_init():
        m = ViTModel(ViTConfig(**(REDUCED["vit"] if reduced else {})))
    return _finish(m, dtype, device)


def resnet50(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """ResNet-50 (transformers ``ResNetModel``, default config: bottlenecks 3/4/6/3, BatchNorm
    in eval with random running statistics)."""
    from transformers import ResNetConfig, ResNetModel

    with _skip_library_init():
        m = ResNetModel(ResNetConfig(**(REDUCED["resnet"] if reduced else {})))
    return _finish(m, dtype, device)


def t5_encoder(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    """The encoder of T5-small (transformers ``T5EncoderModel``: 6 layers, 512 wide, relative
    position buckets, RMS norm, ReLU feed-forward)."""
    from transformers import T5Config, T5EncoderModel

    with _skip_library_init():
        m = T5EncoderModel(T5Config(**(REDUCED["t5"] if reduced else {})))
    return _finish(m, dtype, device)


def _reduced_unet(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    return _unet_from(REDUCED["sd15_unet"], dtype, device) if reduced else unet(dtype, device)


def _vae_decoder(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    return VaeDecode(_vae(reduced)).to(device=device, dtype=dtype).eval()


def _clip(dtype=torch.float32, device="cpu", reduced: bool = False) -> torch.nn.Module:
    if not reduced:
        return clip_text_encoder(dtype, device)
    from transformers import CLIPTextConfig, CLIPTextModel

    with _skip_library_init():
        m = CLIPTextModel(CLIPTextConfig(**REDUCED["clip"]))
    return _finish(m, dtype, device)


# --------------------------------------------------------------------------- inputs


def _gen(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def _config_of(name: str, reduced: bool) -> dict:
    full = {"sd15_unet": SD15_UNET, "sd2_unet": SD2_UNET, "sdxl_unet": SDXL_UNET,
            "controlnet": SD15_CONTROLNET, "clip": SD15_CLIP, "clip2": SDXL_CLIP2}
    return REDUCED[name] if reduced else full.get(name, {})


def _unet_like_inputs(name, shape, reduced, dtype, device, seed):
    """(latent, timestep, context) plus the model's extra inputs, for a latent of ``h x w``."""
    batch, h, w, seq = shape
    cfg = _config_of(name, reduced)
    g = _gen(seed)
    x = torch.randn(batch, 4, h, w, generator=g).to(device, dtype)
    t = torch.tensor(999.0, device=device)
    ctx = torch.randn(batch, seq, cfg["cross_attention_dim"], generator=g).to(device, dtype)
    kwargs: dict = {}
    if name == "sdxl_unet":
        time_dims = 6 * cfg["addition_time_embed_dim"]
        text = torch.randn(batch, cfg["projection_class_embeddings_input_dim"] - time_dims, generator=g)
        time_ids = torch.tensor([[8.0 * h, 8.0 * w, 0.0, 0.0, 8.0 * h, 8.0 * w]]).repeat(batch, 1)
        kwargs["added_cond_kwargs"] = {"text_embeds": text.to(device, dtype), "time_ids": time_ids.to(device, dtype)}
    if name == "controlnet":
        down = 2 ** (len(cfg["conditioning_embedding_out_channels"]) - 1)  # image px per latent px
        cond = torch.rand(batch, 3, down * h, down * w, generator=g).to(device, dtype)
        return (x, t, ctx, cond), {"return_dict": False}
    return (x, t, ctx), kwargs


def _image_inputs(name, shape, reduced, dtype, device, seed):
    batch, h, w = shape
    ch = 4 if name == "vae_decoder" else 3
    return (torch.randn(batch, ch, h, w, generator=_gen(seed)).to(device, dtype),), {}


def _token_inputs(name, shape, reduced, dtype, device, seed):
    """Token ids (and, for BERT, the attention mask with padding and token types a tokenizer
    returns). CLIP's last token is its end-of-text id, where pooling looks."""
    batch, seq = shape
    vocab = 1000 if reduced else {"bert": 30522, "gpt2": 50257, "t5_encoder": 32128}.get(name, 49408)
    g = _gen(seed)
    ids = torch.randint(0, vocab - 1, (batch, seq), generator=g)
    if name in ("clip", "clip2"):
        ids[:, -1] = vocab - 1
    kwargs = {}
    if name == "bert":
        mask = torch.ones(batch, seq, dtype=torch.long)
        mask[0, seq - seq // 3:] = 0  # the first sequence is padded
        kwargs = {"attention_mask": mask.to(device), "token_type_ids": torch.zeros_like(ids).to(device)}
    return (ids.to(device),), kwargs


@dataclass
class ZooModel:
    """One zoo entry: ``build(dtype, device, reduced)`` and ``inputs(shape, reduced, dtype, device,
    seed) -> (args, kwargs)``; ``example`` is the compile shape, ``shapes`` the shapes tests serve
    with that one compile (batch 1 and an odd size among them), for the full and reduced configs."""

    name: str
    build: Callable[..., torch.nn.Module]
    make_inputs: Callable[..., tuple[tuple, dict]]
    example: tuple
    shapes: list[tuple]
    reduced_example: tuple
    reduced_shapes: list[tuple]

    def inputs(self, shape, reduced=False, dtype=torch.float32, device="cpu", seed=1) -> tuple[tuple, dict]:
        return self.make_inputs(self.name, shape, reduced, dtype, device, seed)


ZOO: dict[str, ZooModel] = {z.name: z for z in [
    # latents (batch, h, w, text length); reduced UNets have one downsampling (h, w any size)
    ZooModel("sd15_unet", _reduced_unet, _unet_like_inputs, (2, 64, 64, 77),
             [(1, 64, 64, 77), (3, 48, 80, 19), (2, 96, 64, 77)], (2, 8, 8, 7), [(1, 8, 8, 7), (3, 10, 14, 5), (2, 6, 12, 9)]),
    ZooModel("sd2_unet", sd2_unet, _unet_like_inputs, (2, 96, 96, 77),
             [(1, 64, 64, 77), (3, 48, 80, 19), (2, 96, 96, 77)], (2, 8, 8, 7), [(1, 8, 8, 7), (3, 10, 14, 5), (2, 6, 12, 9)]),
    ZooModel("sdxl_unet", sdxl_unet, _unet_like_inputs, (2, 128, 128, 77),
             [(1, 128, 128, 77), (3, 96, 136, 19), (2, 128, 96, 77)], (2, 8, 8, 7), [(1, 8, 8, 7), (3, 12, 16, 5), (2, 8, 12, 9)]),
    ZooModel("controlnet", controlnet, _unet_like_inputs, (2, 64, 64, 77),
             [(1, 64, 64, 77), (3, 48, 80, 19), (2, 96, 64, 77)], (2, 8, 8, 7), [(1, 8, 8, 7), (3, 10, 14, 5), (2, 6, 12, 9)]),
    # images (batch, height, width)
    ZooModel("vae_decoder", _vae_decoder, _image_inputs, (1, 64, 64),
             [(1, 96, 96), (3, 40, 56), (2, 64, 128)], (1, 8, 8), [(1, 12, 12), (3, 9, 13), (2, 8, 16)]),
    ZooModel("vae_encoder", vae_encoder, _image_inputs, (1, 512, 512),
             [(1, 768, 768), (3, 264, 200), (2, 512, 512)], (1, 32, 32), [(1, 48, 48), (3, 40, 56), (2, 32, 64)]),
    ZooModel("vit", vit, _image_inputs, (2, 224, 224), [(1, 224, 224), (3, 224, 224), (8, 224, 224)],
             (2, 32, 32), [(1, 32, 32), (3, 32, 32), (5, 32, 32)]),
    ZooModel("resnet50", resnet50, _image_inputs, (2, 224, 224), [(1, 224, 224), (3, 200, 264), (2, 320, 320)],
             (2, 64, 64), [(1, 64, 64), (3, 40, 56), (2, 72, 48)]),
    # tokens (batch, sequence)
    ZooModel("clip", _clip, _token_inputs, (2, 77), [(1, 77), (3, 13), (2, 40)], (2, 7), [(1, 7), (3, 13), (2, 5)]),
    ZooModel("clip2", sdxl_clip2, _token_inputs, (2, 77), [(1, 77), (3, 13), (2, 40)], (2, 7), [(1, 7), (3, 13), (2, 5)]),
    ZooModel("bert", bert, _token_inputs, (2, 128), [(1, 128), (3, 13), (4, 77)], (2, 7), [(1, 7), (3, 13), (2, 5)]),
    ZooModel("gpt2", gpt2, _token_inputs, (2, 128), [(1, 128), (3, 13), (4, 77)], (2, 7), [(1, 7), (3, 13), (2, 5)]),
    ZooModel("t5_encoder", t5_encoder, _token_inputs, (2, 128), [(1, 128), (3, 13), (4, 77)], (2, 7), [(1, 7), (3, 13), (2, 5)]),
]}
