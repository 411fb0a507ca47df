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
