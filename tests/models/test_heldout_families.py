"""Model families and call patterns that ``blade.models.ZOO`` does not name, in reduced configs
(random weights, 1-2 layers, 32 channels): each compiles once on the CPU in fp32 and serves
batch 1 and 3 and odd sequence lengths like eager, with no eager answer and the variants stated.

They come from ``benchmarks/probe_heldout.py`` (the probe that found what they pin down); each
test names the defect it guards against.
"""

import pytest
import torch

import blade

from tests.models.test_zoo import assert_matches, fallback_targets

transformers = pytest.importorskip("transformers")

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def build(cls_name: str, cfg_name: str, **cfg) -> torch.nn.Module:
    from blade.models import _skip_library_init, randomize

    with _skip_library_init():
        m = getattr(transformers, cls_name)(getattr(transformers, cfg_name)(**cfg))
    return randomize(m).eval()


def token_inputs(b: int, n: int, vocab: int = 100):
    g = torch.Generator().manual_seed(b * 100 + n)
    ids = torch.randint(0, vocab, (b, n), generator=g)
    mask = torch.ones(b, n, dtype=torch.long)
    mask[0, n // 2:] = 0  # padding in the first row
    return (ids,), dict(attention_mask=mask)


def serve(model, example, shapes, make, rtol=1e-4):
    args, kwargs = make(*example)
    opt = blade.optimize(model, args, model_kwargs=kwargs)
    for shape in shapes:
        args, kwargs = make(*shape)
        with torch.no_grad():
            assert_matches(opt(*args, **kwargs), model(*args, **kwargs), rtol)
    assert opt.eager_calls == 0
    return opt


@pytest.mark.parametrize("family", ["distilbert", "albert"])
def test_position_table_sliced_to_the_sequence(family):
    """DistilBERT and ALBERT slice an 80-row position table to the sequence length; export guards
    ``s1 < 80`` and the slice is ``min(80, s1)`` rows. Without the guard as a range the add of the
    position embedding to the tokens could not be verified and ran in eager PyTorch."""
    if family == "distilbert":
        model = build("DistilBertModel", "DistilBertConfig", vocab_size=100, dim=32, n_layers=1, n_heads=4,
                      hidden_dim=64, max_position_embeddings=80)
    else:
        model = build("AlbertModel", "AlbertConfig", vocab_size=100, embedding_size=16, max_position_embeddings=80,
                      **dict(SMALL, num_hidden_layers=1))
    opt = serve(model, (2, 16), [(1, 9), (3, 13), (2, 31)], token_inputs)
    assert len(opt.variants) == 1
    assert "aten.add.Tensor" not in fallback_targets(opt), opt.report.format()


def image_inputs(**kwargs):
    def make(b, r):
        g = torch.Generator().manual_seed(b * 1000 + r)
        return (torch.randn(b, 3, r, r, generator=g),), dict(kwargs)
    return make


def test_swin_window_padding_is_compiled():
    """Swin pads each stage to a multiple of its window with ``(-s) mod min(h, w)``-like amounts:
    they reached the eager fallback of aten.pad as floats and every call was answered by the
    original module. Swin pads only when it must (a Python branch): 32 pixels need no window
    padding, 28 do, and that is a second guard class."""
    model = build("SwinModel", "SwinConfig", image_size=32, patch_size=4, embed_dim=16, depths=[1, 1],
                  num_heads=[2, 2], window_size=4)
    opt = serve(model, (2, 32), [(3, 32), (2, 28), (3, 28)], image_inputs())
    assert len(opt.variants) == 2


@pytest.mark.parametrize("family", ["clip", "deit"])
def test_vision_transformer_at_its_native_resolution(family):
    """With ``interpolate_pos_encoding`` CLIP and DeiT add their position table unchanged when the
    patch grid is the native one; export guards ``(s1 floordiv 8)**2 == 16`` and the tokens dim
    is that expression: the add to the 17-row table ran in eager PyTorch."""
    cls, cfg = ("CLIPVisionModel", "CLIPVisionConfig") if family == "clip" else ("DeiTModel", "DeiTConfig")
    model = build(cls, cfg, image_size=32, patch_size=8, **dict(SMALL, num_hidden_layers=1))
    opt = serve(model, (2, 32), [(1, 32), (3, 39)], image_inputs(interpolate_pos_encoding=True))
    assert len(opt.variants) == 1
    assert not fallback_targets(opt), opt.report.format()


def test_dit_compiles_at_each_resolution():
    """Diffusers' DiT unpatchifies with ``int(tokens ** 0.5)``: export's guard on it had no
    integer form and the model ran in eager PyTorch; a stride-2 patch conv pinned to 8 by the
    native-size guard failed verification."""
    diffusers = pytest.importorskip("diffusers")
    from blade.models import _skip_library_init, randomize

    with _skip_library_init():
        model = diffusers.DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4,
                                                out_channels=4, num_layers=1, sample_size=16, patch_size=2,
                                                norm_num_groups=8, num_embeds_ada_norm=10)
    model = randomize(model).eval()

    def make(b, r):
        g = torch.Generator().manual_seed(b * 1000 + r)
        return (torch.randn(b, 4, r, r, generator=g), torch.tensor([5] * b)), dict(
            class_labels=torch.randint(0, 10, (b,), generator=g))

    opt = serve(model, (2, 16), [(1, 16), (3, 17)], make)
    assert len(opt.variants) == 1
    assert not fallback_targets(opt), opt.report.format()
