"""Unmodified diffusers pipelines with random weights, for the pipeline tests (CPU and GPU).

Each builder returns a pipeline whose components are built from public configs (``tiny=True``:
the same structure with small widths, for the CPU) with seeded random weights, so two calls with
the same seed and another dtype hold the same weights. No tokenizer files exist here: the tests
pass prompt embeddings directly, and the tokenizers are ``None``.

``first_unet_call`` runs a pipeline for one step with a hook on the UNet and returns the
arguments the pipeline passed: the example for ``blade.optimize``, so the compiled UNet is
compiled for exactly the call pattern the pipeline uses (keywords, ``return_dict=False``,
``added_cond_kwargs``, ControlNet residuals, the scheduler's timestep dtype).
"""

from __future__ import annotations

import torch

from blade import models

SD15_TEXT_DIM = 768
SDXL_TEXT_DIM, SDXL_POOLED_DIM = 2048, 1280


def _unet_config(kind: str, tiny: bool) -> dict:
    if kind == "sdxl":
        cfg = dict(
            sample_size=128, in_channels=4, out_channels=4, act_fn="silu", norm_num_groups=32,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            block_out_channels=[320, 640, 1280], layers_per_block=2, transformer_layers_per_block=[1, 2, 10],
            attention_head_dim=[5, 10, 20], cross_attention_dim=SDXL_TEXT_DIM, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816, upcast_attention=False,
        )
        if tiny:
            cfg.update(block_out_channels=[32, 64, 64], norm_num_groups=8, transformer_layers_per_block=[1, 2, 1],
                       attention_head_dim=[2, 4, 4], cross_attention_dim=32, addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=16 + 6 * 8, layers_per_block=1)
        return cfg
    cfg = dict(models.SD15_UNET)
    if tiny:
        cfg.update(block_out_channels=[32, 64, 64, 64], norm_num_groups=8, cross_attention_dim=32,
                   attention_head_dim=4, layers_per_block=1)
    return cfg


def _build(cls, config: dict, dtype, device, seed: int):
    with models._skip_library_init():
        m = cls(**config)
    return models.randomize(m, seed).to(device=device, dtype=dtype).eval()


def _vae(tiny: bool, dtype, device):
    from diffusers import AutoencoderKL

    cfg = dict(models.SD15_VAE)
    if tiny:
        cfg.update(block_out_channels=[32, 32, 64, 64], norm_num_groups=8, layers_per_block=1)
    return _build(AutoencoderKL, cfg, dtype, device, seed=2)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_pipeline(kind: str, dtype=torch.float16, device="cuda", tiny: bool = False):
    """``kind``: ``sd`` (StableDiffusionPipeline), ``img2img``, ``controlnet`` or ``sdxl``."""
    import diffusers
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = _build(UNet2DConditionModel, _unet_config("sdxl" if kind == "sdxl" else "sd", tiny), dtype, device, seed=1)
    vae = _vae(tiny, dtype, device)
    common = dict(vae=vae, unet=unet, scheduler=_scheduler(), text_encoder=None, tokenizer=None)
    if kind == "sdxl":
        return diffusers.StableDiffusionXLPipeline(text_encoder_2=None, tokenizer_2=None, add_watermarker=False,
                                                   force_zeros_for_empty_prompt=False, **common).to(device)
    no_safety = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "sd":
        return diffusers.StableDiffusionPipeline(**common, **no_safety).to(device)
    if kind == "img2img":
        return diffusers.StableDiffusionImg2ImgPipeline(**common, **no_safety).to(device)
    if kind == "controlnet":
        with models._skip_library_init():
            cn = ControlNetModel.from_unet(unet)
        cn = models.randomize(cn, 3).to(device=device, dtype=dtype).eval()
        return diffusers.StableDiffusionControlNetPipeline(controlnet=cn, **common, **no_safety).to(device)
    raise ValueError(kind)


def pipeline_inputs(kind: str, height: int, width: int, dtype, device, tiny: bool = False, seed: int = 0) -> dict:
    """Keyword arguments of one pipeline call: prompt embeddings, initial noise or image, and a
    seeded generator, so that two runs (eager and Blade, fp16 and fp32) see the same values."""
    g = torch.Generator().manual_seed(seed)
    text_dim = (32 if tiny else SDXL_TEXT_DIM) if kind == "sdxl" else (32 if tiny else SD15_TEXT_DIM)

    def randn(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    kw = dict(prompt_embeds=randn(1, 77, text_dim), negative_prompt_embeds=randn(1, 77, text_dim),
              num_inference_steps=3, guidance_scale=7.5, output_type="pt",
              generator=torch.Generator(device).manual_seed(seed))
    if kind == "sdxl":
        pooled = 16 if tiny else SDXL_POOLED_DIM
        kw.update(pooled_prompt_embeds=randn(1, pooled), negative_pooled_prompt_embeds=randn(1, pooled))
    if kind in ("img2img", "controlnet"):
        kw["image"] = torch.rand(1, 3, height, width, generator=g).to(device, dtype)
    if kind == "img2img":
        kw["strength"] = 0.75
    else:
        kw.update(height=height, width=width, latents=randn(1, 4, height // 8, width // 8))
    return kw


def first_unet_call(pipe, kwargs: dict) -> tuple[tuple, dict]:
    """Run ``pipe`` for two steps (img2img with strength < 1 skips a one-step run) and return the (args, kwargs) its first UNet call received."""
    seen = []

    def hook(module, args, kw):
        if not seen:
            seen.append((args, dict(kw)))

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe(**{**kwargs, "num_inference_steps": 2})
    finally:
        handle.remove()
    return seen[0]


def images(pipe, kwargs: dict) -> torch.Tensor:
    with torch.no_grad():
        return pipe(**kwargs).images.float()


def check_pipeline(kind: str, resolutions, dtype, device, tiny: bool, config=None) -> list[str]:
    """Eager and Blade's UNet and VAE in the same unmodified pipeline at each resolution (height, width).

    The UNet is compiled once, for the pipeline's own first UNet call at the first resolution;
    every later call (other steps, other resolutions of the same guard class) must reuse that
    compile. Images must match: for float32, within 1e-3 of eager; for float16, Blade's error
    against a float32 eager pipeline at most twice eager float16's (+1e-3: images are 8-bit
    content). Returns one line per resolution with the measured differences."""
    import blade

    pipe = build_pipeline(kind, dtype, device, tiny)
    ref32 = build_pipeline(kind, torch.float32, device, tiny) if dtype != torch.float32 else None
    eager_unet, eager_vae = pipe.unet, pipe.vae
    first = pipeline_inputs(kind, *resolutions[0], dtype, device, tiny)
    args, kw = first_unet_call(pipe, first)
    with torch.no_grad():
        opt = blade.optimize(eager_unet, model_inputs=args, model_kwargs=kw, config=config or blade.Config())
    # the VAE as a user optimizes it: no example (its forward is never called), the pipeline calls
    # vae.decode (and img2img vae.encode), which run through it (compiler/methods.py)
    opt_vae = blade.optimize(eager_vae, config=config or blade.Config())
    lines = []
    for i, (h, w) in enumerate(resolutions):
        inputs = lambda dt: pipeline_inputs(kind, h, w, dt, device, tiny, seed=10 + i)  # noqa: E731
        pipe.unet, pipe.vae = eager_unet, eager_vae
        eager = images(pipe, inputs(dtype))
        pipe.unet, pipe.vae = opt, opt_vae
        out = images(pipe, inputs(dtype))
        diff = (out - eager).abs().max().item()
        if ref32 is None:
            assert diff <= 1e-3, f"{kind} {h}x{w}: Blade vs eager max abs diff {diff:.3e}"
            lines.append(f"{kind} {h}x{w}: max |blade - eager| = {diff:.2e}")
        else:
            ref = images(ref32, inputs(torch.float32))
            err_blade, err_eager = (out - ref).abs().max().item(), (eager - ref).abs().max().item()
            assert err_blade <= 2 * err_eager + 1e-3, (
                f"{kind} {h}x{w}: Blade fp16 error vs fp32 {err_blade:.3e} > 2x eager fp16's {err_eager:.3e}")
            lines.append(f"{kind} {h}x{w}: max |blade - eager| = {diff:.2e}; vs fp32: blade {err_blade:.2e}, "
                         f"eager {err_eager:.2e}")
        codes = len({id(v.executor.code) for v in opt.variants})  # guard classes may share one program
        assert codes == 1, f"{kind} {h}x{w}: compiled {codes} programs, expected 1"
        assert opt.eager_calls == 0, f"{kind} {h}x{w}: {opt.eager_calls} UNet calls answered eagerly"
        decode = opt_vae.decode
        assert decode.mode == "compiled", f"{kind}: vae.decode runs {decode.mode}"
        if i > 0:  # the first decode ran eagerly (the method's first call), later ones compiled
            assert decode.compiled.variants and decode.compiled.eager_calls == 0, (
                f"{kind} {h}x{w}: vae.decode was not compiled ({decode.compiled.eager_calls} eager calls)")
    pipe.unet, pipe.vae = eager_unet, eager_vae
    return lines
