"""The transformers / diffusers cases of ``benchmarks/probe_heldout.py`` (each registers itself with
``case``; models built from small configs with random weights)."""

from __future__ import annotations

import torch
import torch.nn as nn

from probe_registry import case

# ------------------------------------------------------------------ transformers / diffusers

def _hf(cls_name, cfg_name, **cfg):
    import transformers
    from blade.models import randomize, _skip_library_init
    with _skip_library_init():
        m = getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**cfg))
    return randomize(m).eval()


def _ids(vocab):
    def make(b, n):
        ids = torch.randint(0, vocab, (b, n))
        mask = torch.ones(b, n, dtype=torch.long)
        mask[0, n // 2:] = 0
        return (ids,), dict(attention_mask=mask)
    return make


SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def llama():
    m = _hf("LlamaModel", "LlamaConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def llama_hidden_states():
    """``output_hidden_states=True`` reaches forward through ``**kwargs`` (transformers 5)."""
    m = _hf("LlamaModel", "LlamaConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    ids = _ids(100)

    def make(b, n):
        args, kwargs = ids(b, n)
        return args, {**kwargs, "output_hidden_states": True}
    return m, make


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mixtral_moe():
    """Mixture of experts: top-k routing, sorting tokens by expert, grouped matmuls (eager ops)."""
    m = _hf("MixtralModel", "MixtralConfig", vocab_size=100, num_key_value_heads=2, use_cache=False,
            num_local_experts=4, num_experts_per_tok=2, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def qwen2_moe():
    m = _hf("Qwen2MoeModel", "Qwen2MoeConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, num_experts=4,
            num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mistral():
    m = _hf("MistralModel", "MistralConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def qwen2():
    m = _hf("Qwen2Model", "Qwen2Config", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def llama_causal_lm():
    m = _hf("LlamaForCausalLM", "LlamaConfig", vocab_size=100, num_key_value_heads=2, use_cache=False, **SMALL)
    return m, lambda b, n: ((torch.randint(0, 100, (b, n)),), {})


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def roberta():
    return _hf("RobertaModel", "RobertaConfig", vocab_size=100, max_position_embeddings=80, **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def distilbert():
    return _hf("DistilBertModel", "DistilBertConfig", vocab_size=100, dim=32, n_layers=2, n_heads=4, hidden_dim=64,
               max_position_embeddings=80), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def albert():
    return _hf("AlbertModel", "AlbertConfig", vocab_size=100, embedding_size=16, max_position_embeddings=80,
               **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def deberta_v2():
    return _hf("DebertaV2Model", "DebertaV2Config", vocab_size=100, max_position_embeddings=80,
               relative_attention=True, position_buckets=16, max_relative_positions=32,
               pos_att_type=["p2c", "c2p"], **SMALL), _ids(100)


def _seq2seq(cls_name, cfg_name, **cfg):
    m = _hf(cls_name, cfg_name, **cfg)

    def make(b, n):
        ids = torch.randint(0, 100, (b, n))
        dec = torch.randint(0, 100, (b, max(1, n // 2 + 1)))
        return (ids,), dict(decoder_input_ids=dec, use_cache=False)
    return m, make


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def bart():
    return _seq2seq("BartModel", "BartConfig", vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_position_embeddings=80)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def t5_generation_cache():
    """A generation model's first step with ``use_cache=True``: it returns an ``EncoderDecoderCache``
    (its cache layers start from constants made inside submodules)."""
    m = _hf("T5ForConditionalGeneration", "T5Config", vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=1,
            num_decoder_layers=1, num_heads=4, decoder_start_token_id=0)

    def make(b, n):
        return (torch.randint(0, 100, (b, n)),), dict(decoder_input_ids=torch.randint(0, 100, (b, 1)), use_cache=True)
    return m, make


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def t5_seq2seq():
    return _seq2seq("T5Model", "T5Config", vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=1,
                    num_decoder_layers=1, num_heads=4)


@case((2, 128), [(1, 128), (3, 128), (5, 128)])
def whisper_encoder():
    import transformers
    from blade.models import randomize, _skip_library_init
    cfg = transformers.WhisperConfig(vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                                     encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, num_mel_bins=8, max_source_positions=64,
                                     max_target_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                     decoder_start_token_id=1)
    with _skip_library_init():
        m = transformers.WhisperModel(cfg).encoder
    m = randomize(m).eval()
    # frames = 2 * positions; whisper checks the length equals max_source_positions*2
    return m, lambda b, n: ((torch.randn(b, 8, n),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def clip_vision():
    return _hf("CLIPVisionModel", "CLIPVisionConfig", image_size=32, patch_size=8, num_channels=3, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 64), (3, 32), (2, 96)])
def swin():
    return _hf("SwinModel", "SwinConfig", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
               num_heads=[2, 2], window_size=4), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def convnext():
    return _hf("ConvNextModel", "ConvNextConfig", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def deit():
    return _hf("DeiTModel", "DeiTConfig", image_size=32, patch_size=8, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def mobilenet_v2():
    return _hf("MobileNetV2Model", "MobileNetV2Config", image_size=32, depth_multiplier=0.35), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def segformer():
    return _hf("SegformerForSemanticSegmentation", "SegformerConfig", num_encoder_blocks=2, depths=[1, 1],
               sr_ratios=[2, 1], hidden_sizes=[16, 32], num_attention_heads=[1, 2], decoder_hidden_size=32,
               num_labels=3, patch_sizes=[7, 3], strides=[4, 2]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


def _diffusers(cls_name, **cfg):
    import diffusers
    from blade.models import randomize, _skip_library_init
    with _skip_library_init():
        m = getattr(diffusers, cls_name)(**cfg)
    return randomize(m).eval()


@case((2, 32), [(1, 16), (3, 24), (2, 40)])
def unet2d_unconditional():
    m = _diffusers("UNet2DModel", sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return m, lambda b, r: ((torch.randn(b, 3, r, r), torch.tensor(10.0)), {})


@case((2, 32, 981), [(1, 16, 961), (3, 24, 0), (2, 40, 500), (1, 32, 1)])
def unet2d_int_timesteps():
    """A Python int timestep that changes every call (a denoising loop): two variants serve them all."""
    m = _diffusers("UNet2DModel", sample_size=32, in_channels=3, out_channels=3, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=8,
                   down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"))
    return m, lambda b, r, t: ((torch.randn(b, 3, r, r), t), {})


@case((2, 16), [(1, 8), (3, 24), (2, 40)])
def unet_class_embedding():
    m = _diffusers("UNet2DConditionModel", sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, cross_attention_dim=16, attention_head_dim=8,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), class_embed_type="timestep",
                   num_class_embeds=None)
    return m, lambda b, r: ((torch.randn(b, 4, r, r), torch.tensor(10.0), torch.randn(b, 7, 16)),
                            dict(class_labels=torch.randint(0, 10, (b,)).float()))


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def vae_encode():
    vae = _diffusers("AutoencoderKL", in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                     block_out_channels=(16, 32), norm_num_groups=8,
                     down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)

    class Enc(nn.Module):
        def __init__(self):
            super().__init__()
            self.vae = vae

        def forward(self, x):
            return self.vae.encode(x).latent_dist.mode()
    return Enc(), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def dit_transformer2d():
    m = _diffusers("DiTTransformer2DModel", num_attention_heads=2, attention_head_dim=8, in_channels=4,
                   out_channels=4, num_layers=1, sample_size=16, patch_size=2, norm_num_groups=8, num_embeds_ada_norm=10)
    return m, lambda b, r: ((torch.randn(b, 4, r, r), torch.tensor([5] * b)), dict(class_labels=torch.randint(0, 10, (b,))))



# ------------------------------------------------------------------ more families (session 8)

def _decoder(cls_name, cfg_name, **cfg):
    cfg = {"vocab_size": 100, "use_cache": False, **SMALL, **cfg}
    return _hf(cls_name, cfg_name, **cfg), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gpt_neox():
    return _decoder("GPTNeoXModel", "GPTNeoXConfig", rotary_pct=0.5)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def falcon():
    return _decoder("FalconModel", "FalconConfig", new_decoder_architecture=True, num_kv_heads=2)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def phi():
    return _decoder("PhiModel", "PhiConfig", partial_rotary_factor=0.5)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def phi3():
    return _decoder("Phi3Model", "Phi3Config", num_key_value_heads=2, pad_token_id=0)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gemma():
    return _decoder("GemmaModel", "GemmaConfig", num_key_value_heads=1, head_dim=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gemma2():
    return _decoder("Gemma2Model", "Gemma2Config", num_key_value_heads=2, head_dim=8, sliding_window=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def qwen3():
    return _decoder("Qwen3Model", "Qwen3Config", num_key_value_heads=2, head_dim=8)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def opt():
    return _hf("OPTModel", "OPTConfig", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
               ffn_dim=64, word_embed_proj_dim=32, max_position_embeddings=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def bloom():
    return _hf("BloomModel", "BloomConfig", vocab_size=100, hidden_size=32, n_layer=2, n_head=4,
               use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gptj():
    return _hf("GPTJModel", "GPTJConfig", vocab_size=100, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
               n_positions=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def gpt_bigcode():
    return _hf("GPTBigCodeModel", "GPTBigCodeConfig", vocab_size=100, n_embd=32, n_layer=2, n_head=4,
               multi_query=True, n_positions=80, use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mpt():
    return _hf("MptModel", "MptConfig", vocab_size=100, d_model=32, n_layers=2, n_heads=4, max_seq_len=80,
               use_cache=False), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def electra():
    return _hf("ElectraModel", "ElectraConfig", vocab_size=100, embedding_size=16, max_position_embeddings=80,
               **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def mpnet():
    return _hf("MPNetModel", "MPNetConfig", vocab_size=100, max_position_embeddings=80, **SMALL), _ids(100)


@case((2, 16), [(1, 9), (3, 13), (2, 31)])
def pegasus():
    return _seq2seq("PegasusModel", "PegasusConfig", vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                    max_position_embeddings=80)


@case((2, 400), [(1, 320), (3, 560), (2, 999)])
def wav2vec2():
    m = _hf("Wav2Vec2Model", "Wav2Vec2Config", hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
            intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, do_stable_layer_norm=True,
            feat_extract_norm="layer")
    return m, lambda b, n: ((torch.randn(b, n),), {})


@case((2, 32), [(1, 32), (3, 32), (2, 32)])
def beit():
    return _hf("BeitModel", "BeitConfig", image_size=32, patch_size=8, use_relative_position_bias=True,
               **SMALL), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 28), [(1, 42), (3, 35), (2, 56)])
def dinov2():
    return _hf("Dinov2Model", "Dinov2Config", image_size=28, patch_size=7, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def siglip_vision():
    return _hf("SiglipVisionModel", "SiglipVisionConfig", image_size=32, patch_size=8, **SMALL), \
        lambda b, r: ((torch.randn(b, 3, r, r),), dict(interpolate_pos_encoding=True))


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def resnet_hf():
    return _hf("ResNetModel", "ResNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
               layer_type="bottleneck"), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def regnet():
    return _hf("RegNetModel", "RegNetConfig", embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
               groups_width=8), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def efficientnet():
    import transformers
    from transformers.models.efficientnet.modeling_efficientnet import round_filters
    cfg = dict(image_size=32, width_coefficient=0.25, depth_coefficient=0.25)
    top = round_filters(transformers.EfficientNetConfig(**cfg), 1280)  # the top conv's width
    return _hf("EfficientNetModel", "EfficientNetConfig", hidden_dim=top, **cfg), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 61)])
def poolformer():
    return _hf("PoolFormerModel", "PoolFormerConfig", hidden_sizes=[16, 32], depths=[1, 1], num_encoder_blocks=2,
               patch_sizes=[7, 3], strides=[4, 2], padding=[2, 1]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 64), (3, 32), (2, 96)])
def mobilevit():
    return _hf("MobileViTModel", "MobileViTConfig", image_size=32, hidden_sizes=[16, 24, 32],
               neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32]), lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 32), [(1, 48), (3, 40), (2, 56)])
def convnextv2():
    return _hf("ConvNextV2Model", "ConvNextV2Config", hidden_sizes=[16, 32], depths=[1, 1], num_stages=2), \
        lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def sd3_transformer():
    m = _diffusers("SD3Transformer2DModel", sample_size=16, patch_size=2, in_channels=4, num_layers=2,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
                   pooled_projection_dim=8, out_channels=4, pos_embed_max_size=32)
    return m, lambda b, r: ((torch.randn(b, 4, r, r),), dict(encoder_hidden_states=torch.randn(b, 7, 16),
                                                             pooled_projections=torch.randn(b, 8),
                                                             timestep=torch.tensor([3] * b)))


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def pixart():
    m = _diffusers("PixArtTransformer2DModel", sample_size=16, patch_size=2, in_channels=4, out_channels=4,
                   num_layers=1, attention_head_dim=8, num_attention_heads=2, cross_attention_dim=16,
                   caption_channels=12, norm_num_groups=8)
    return m, lambda b, r: ((torch.randn(b, 4, r, r),), dict(encoder_hidden_states=torch.randn(b, 7, 12),
                                                             timestep=torch.tensor([3] * b),
                                                             added_cond_kwargs={"resolution": None,
                                                                                "aspect_ratio": None}))


@case((2, 16), [(1, 8), (3, 12), (2, 20)])
def flux_transformer():
    m = _diffusers("FluxTransformer2DModel", patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                   attention_head_dim=8, num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8,
                   axes_dims_rope=(2, 2, 4))

    def make(b, r):
        n = (r // 2) * (r // 2)
        img_ids = torch.zeros(n, 3)
        img_ids[:, 1] = torch.arange(n) // (r // 2)
        img_ids[:, 2] = torch.arange(n) % (r // 2)
        return (torch.randn(b, n, 16),), dict(encoder_hidden_states=torch.randn(b, 7, 16),
                                              pooled_projections=torch.randn(b, 8), timestep=torch.tensor([0.5] * b),
                                              img_ids=img_ids, txt_ids=torch.zeros(7, 3))
    return m, make


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def autoencoder_tiny():
    m = _diffusers("AutoencoderTiny", encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                   num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1), latent_channels=4)
    return m, lambda b, r: ((torch.randn(b, 3, r, r),), {})


@case((1, 32), [(1, 16), (3, 24), (2, 40)])
def vq_model():
    m = _diffusers("VQModel", in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
                   latent_channels=4, num_vq_embeddings=32, norm_num_groups=8,
                   down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    return m, lambda b, r: ((torch.randn(b, 3, r, r),), {})
