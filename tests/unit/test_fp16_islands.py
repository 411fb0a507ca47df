"""``Config(enable_fp16=True)`` keeps a model's float32 islands as eager float16 keeps them.

SDXL embeds its ``time_ids`` (sizes near 1024) with ``time_ids[:, None].float() * freqs`` and
sin/cos: eager ``model.half()`` computes the product in float32 (the ``.float()``, and type
promotion). A float32 capture records no ``.float()`` (it is a no-op there), so Blade must get
the same result from the rule that elementwise ops promote: float16 meeting float32 computes in
float32. Computed in float16, products near 1000 keep no digit after the point and the sines are
noise; the SDXL UNet missed the fp16 bar on the GPU by 2.6x until this rule (issue 8).
"""

import math

import pytest
import torch

import blade


class TimeIdEmbedding(torch.nn.Module):
    def __init__(self, dim: int = 64):
        super().__init__()
        self.dim = dim
        self.proj = torch.nn.Linear(6 * dim, 16)

    def forward(self, x, time_ids):
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
        e = time_ids.flatten()[:, None].float() * freqs[None, :]
        e = torch.cat([torch.sin(e), torch.cos(e)], dim=-1).reshape(x.shape[0], -1)
        return x + self.proj(e.to(x.dtype))


@pytest.mark.parametrize("batch", [1, 3])
def test_time_id_embedding_meets_the_fp16_bar(batch):
    torch.manual_seed(0)
    m32 = TimeIdEmbedding().eval()
    m16 = TimeIdEmbedding().eval()
    m16.load_state_dict(m32.state_dict())
    m16 = m16.half()

    def inputs(b):
        sizes = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]]) + torch.randint(0, 300, (b, 6)) * 8
        return torch.randn(b, 16), sizes

    opt = blade.optimize(m32, inputs(2), config=blade.Config(enable_fp16=True))
    x, ids = inputs(batch)
    with torch.no_grad():
        ref = m32(x, ids)
        eager = (m16(x.half(), ids.half()).float() - ref).abs().max().item()
        out = opt(x, ids)
    assert out.dtype == torch.float32
    err = (out - ref).abs().max().item()
    assert err <= 2 * eager + 1e-6, f"blade fp16 error {err:.3e} vs eager fp16 {eager:.3e}"


def test_weights_still_take_float16():
    """The other half of the rule: a float32 island meeting a weight op is cast to float16 (as
    ``e.to(x.dtype)`` in eager), so the model body keeps running in float16."""
    from blade.dialects.structured import LinearOp
    from blade.ir import walk_ops

    opt = blade.optimize(TimeIdEmbedding().eval(), (torch.randn(2, 16), torch.full((2, 6), 1024.0)),
                         config=blade.Config(enable_fp16=True))
    linears = [op for op in walk_ops(opt.variants[0].program.module) if isinstance(op, LinearOp)]
    assert linears and all(str(op.results[0].type.element_type) == "f16" for op in linears)
