"""``canonicalize`` turns an attention whose boolean mask is "key position <= query position"
(transformers' causal mask, materialised when traced) into ``is_causal=1`` without the mask, and
leaves every other mask as it is. Generated masks: the comparison (``<=``, ``>=``, strict ones,
the reversed direction), the positions' start and step on either side, a padding mask combined
with it, a broadcast over the batch, keys longer than queries. Each compiled module answers as
eager does at several sizes, and is rewritten exactly when its mask is the causal one."""

import random

import pytest
import torch
import torch.nn.functional as F

import blade
from blade.dialects.structured import AttentionOp
from blade.ir import walk_ops


class MaskedAttention(torch.nn.Module):
    """Self-attention (or attention over a longer memory) with a mask built from positions."""

    def __init__(self, case: dict):
        super().__init__()
        self.case = case
        self.q = torch.nn.Linear(16, 16)
        self.kv = torch.nn.Linear(16, 32)

    def forward(self, x, memory, padding):
        c = self.case
        b, s, _ = x.shape
        src = memory if c["longer_keys"] else x
        t = src.shape[1]
        q = self.q(x).view(b, s, 2, 8).transpose(1, 2)
        k, v = self.kv(src).view(b, t, 2, 16).transpose(1, 2).chunk(2, dim=-1)
        row = torch.arange(s, device=x.device) * c["row_step"] + c["row_start"]
        col = torch.arange(t, device=x.device) * c["col_step"] + c["col_start"]
        row, col = row.view(1, 1, s, 1), col.view(1, 1, 1, t)
        mask = {"col<=row": lambda: col <= row, "row>=col": lambda: row >= col, "col<row": lambda: col < row,
                "row<=col": lambda: row <= col, "col>row": lambda: col > row}[c["cmp"]]()
        if c["padding"]:
            mask = mask & padding[:, None, None, :t]
        if c["expand"]:
            mask = mask.expand(b, 1, s, t)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _case(rng: random.Random) -> dict:
    """Mostly near-causal masks: the same start and step on both sides most of the time, so that
    the comparison, a negative or zero step, or a padding term is what makes a mask not causal."""
    step, start = rng.choice([1, 1, 2, -1, 0]), rng.choice([0, 0, 3])
    return {"cmp": rng.choice(["col<=row", "col<=row", "row>=col", "col<row", "row<=col", "col>row"]),
            "row_start": start, "col_start": start if rng.random() < 0.8 else start + 1,
            "row_step": step, "col_step": step if rng.random() < 0.8 else rng.choice([1, 2]),
            "padding": rng.random() < 0.15, "expand": rng.random() < 0.5, "longer_keys": rng.random() < 0.2}


def _is_causal(c: dict) -> bool:
    """Whether the mask keeps exactly key j <= query i for every size (what the rewrite needs)."""
    return (c["cmp"] in ("col<=row", "row>=col") and c["row_start"] == c["col_start"]
            and c["row_step"] == c["col_step"] > 0 and not c["padding"])


def _inputs(b: int, s: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, 16, generator=g)
    memory = torch.randn(b, s + 3, 16, generator=g)
    padding = torch.rand(b, s + 3, generator=g) > 0.2
    padding[:, 0] = True  # every query keeps a key: no row of the softmax is empty
    return x, memory, padding


@pytest.mark.parametrize("seed", range(40))
def test_causal_masks_become_is_causal_and_others_stay(seed):
    rng = random.Random(seed)
    case = _case(rng)
    torch.manual_seed(seed)
    m = MaskedAttention(case).eval()
    with torch.no_grad():
        opt = blade.optimize(m, _inputs(2, 7, seed), config=blade.Config(executor="reference"))
        for b, s in [(2, 7), (1, 5), (3, 11)]:
            args = _inputs(b, s, seed + s)
            want = m(*args)
            if torch.isnan(want).any():  # a row with no key kept (eager's NaN): not a case to compare
                continue
            torch.testing.assert_close(opt(*args), want, rtol=1e-5, atol=1e-5)
    assert opt.eager_calls == 0
    atts = [op for op in walk_ops(opt.variants[0].program.module) if isinstance(op, AttentionOp)]
    assert len(atts) == 1
    rewritten = bool(atts[0].p("is_causal")) and not atts[0].mask
    assert rewritten == _is_causal(case), case
