"""GPU tests (skipped without CUDA): every fused kernel kind against PyTorch, the SD 1.5 models at
three shapes each through generated kernels, no Triton compile for a new shape, CUDA graphs.

The fp16 bar: error against a float32 reference at most twice eager fp16's error, fresh random
inputs, shapes that are not multiples of 8, batch 1 and 3.
"""

import pytest
import torch
import torch.nn.functional as F

import blade
from tests.gpu.helpers import channels_last_copies
from blade import models

pytestmark = pytest.mark.gpu
DEV = "cuda"


def _bar(out, ref16, ref32):
    """Blade's error against the float32 reference is at most twice eager's at the same precision
    (for float32 itself, where eager is the reference: within TF32 convolution noise)."""
    err = (out.float() - ref32).abs().max().item()
    eager = (ref16.float() - ref32).abs().max().item()
    if out.dtype == torch.float32:
        assert err <= 1e-3 * ref32.abs().max().item(), f"blade fp32 error {err:.3e}"
        return
    assert err <= 2 * eager + 1e-6, f"blade error {err:.3e} vs eager {out.dtype} {eager:.3e}"


class GnSilu(torch.nn.Module):
    def __init__(self, c, g):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 3, padding=1)
        self.norm = torch.nn.GroupNorm(g, c)

    def forward(self, x, bias):
        return F.silu(self.norm(self.conv(x) + bias[:, :, None, None])) + x


class LnSoftGeglu(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = torch.nn.LayerNorm(c)
        self.proj = torch.nn.Linear(c, 4 * c)

    def forward(self, x, y):
        h = self.ln(x + y)
        a, g = self.proj(h).chunk(2, dim=-1)
        return torch.softmax(a * F.gelu(g), dim=-1), h


@pytest.mark.parametrize("schedule", ["one", "two"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("c,g", [(320, 32), (20, 5)])
def test_group_norm_kernels(dtype, c, g, schedule, monkeypatch):
    from blade.executors.launch import KernelLauncher
    monkeypatch.setattr(KernelLauncher, "gn_schedule", schedule)
    torch.manual_seed(c)
    m32 = GnSilu(c, g).to(DEV).eval()
    m = GnSilu(c, g).to(DEV, dtype).eval()
    m.load_state_dict({k: v.to(dtype) for k, v in m32.state_dict().items()})
    # the IR executor's launcher, whose GroupNorm schedule the test sets
    opt = blade.optimize(m, (torch.randn(2, c, 16, 16, device=DEV, dtype=dtype), torch.randn(2, c, device=DEV, dtype=dtype)),
                         config=blade.Config(executor="kernels"))
    for b, h, w in [(1, 17, 9), (3, 64, 64), (2, 1, 5)]:
        x = torch.randn(b, c, h, w, device=DEV, dtype=dtype)
        bias = torch.randn(b, c, device=DEV, dtype=dtype)
        with torch.no_grad():
            _bar(opt(x, bias), m(x, bias), m32(x.float(), bias.float()))
    ran = opt.variants[0].program.launch_stats.by_kernel
    assert any(k.endswith("_res" if schedule == "one" else "_stats") for k in ran), dict(ran)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_row_norm_and_pointwise_kernels(dtype):
    m32 = LnSoftGeglu(96).to(DEV).eval()
    m = LnSoftGeglu(96).to(DEV, dtype).eval()
    m.load_state_dict({k: v.to(dtype) for k, v in m32.state_dict().items()})
    opt = blade.optimize(m, (torch.randn(2, 7, 96, device=DEV, dtype=dtype),) * 2)
    for b, n in [(1, 1), (3, 77), (2, 1000)]:
        x, y = (torch.randn(b, n, 96, device=DEV, dtype=dtype) for _ in range(2))
        with torch.no_grad():
            for o, r16, r32 in zip(opt(x, y), m(x, y), m32(x.float(), y.float())):
                _bar(o, r16, r32)


def test_new_shapes_never_compile(monkeypatch):
    import triton

    m = GnSilu(64, 8).to(DEV, torch.float16).eval()
    opt = blade.optimize(m, (torch.randn(2, 64, 16, 16, device=DEV, dtype=torch.float16),
                             torch.randn(2, 64, device=DEV, dtype=torch.float16)))
    calls = []
    real = triton.compile
    monkeypatch.setattr(triton, "compile", lambda *a, **k: calls.append(a) or real(*a, **k))
    for b, h, w in [(1, 9, 31), (4, 40, 24), (3, 128, 96)]:
        opt(torch.randn(b, 64, h, w, device=DEV, dtype=torch.float16), torch.randn(b, 64, device=DEV, dtype=torch.float16))
    torch.cuda.synchronize()
    assert calls == []
    assert len(opt.variants) == 1


@pytest.mark.parametrize("in_place", [True, False])
def test_cuda_graph_per_shape_and_weight_updates(monkeypatch, in_place):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # exact fp32 convs on both sides
    m = GnSilu(32, 8).to(DEV).eval()
    opt = blade.optimize(m, (torch.randn(2, 32, 8, 8, device=DEV), torch.randn(2, 32, device=DEV)),
                         config=blade.Config(convert_weights_in_place=in_place))
    x, bias = torch.randn(2, 32, 8, 8, device=DEV), torch.randn(2, 32, device=DEV)
    torch.testing.assert_close(opt(x, bias), m(x, bias), atol=1e-4, rtol=1e-4)
    # the convolution weight is re-laid-out in place (no copy kept), or left alone and copied
    assert m.conv.weight.is_contiguous(memory_format=torch.channels_last) == in_place
    assert (channels_last_copies(opt) == 0) == in_place
    torch.testing.assert_close(opt(x, bias), m(x, bias), atol=1e-4, rtol=1e-4)  # replay
    with torch.no_grad():
        m.conv.weight.mul_(0.5)  # seen by the captured graph (prepared copies are refreshed)
    torch.testing.assert_close(opt(x, bias), m(x, bias), atol=1e-4, rtol=1e-4)
    assert len(opt.variants[0].graphs) == 1  # captured at the shape's second call
    x2, bias2 = torch.randn(3, 32, 5, 7, device=DEV), torch.randn(3, 32, device=DEV)
    torch.testing.assert_close(opt(x2, bias2), m(x2, bias2), atol=1e-4, rtol=1e-4)
    assert len(opt.variants[0].graphs) == 1  # a new shape's first call: no capture
    torch.testing.assert_close(opt(x2, bias2), m(x2, bias2), atol=1e-4, rtol=1e-4)
    assert len(opt.variants[0].graphs) == 2


@pytest.fixture(scope="module")
def unet16():
    return models.unet(torch.float16, DEV), models.unet(torch.float32, DEV)


_OPTIMIZED = {}  # not an attribute of the model: a BladeModule inside the module it wraps is a cycle


@pytest.mark.parametrize("b,h,w,s", [(2, 512, 512, 77), (1, 384, 640, 77), (3, 256, 256, 19)])
def test_unet_fp16(unet16, b, h, w, s):
    m16, m32 = unet16
    if id(m16) not in _OPTIMIZED:
        _OPTIMIZED[id(m16)] = blade.optimize(m16, models.unet_inputs(2, 512, 512, dtype=torch.float16, device=DEV))
    opt = _OPTIMIZED[id(m16)]
    x, t, c = models.unet_inputs(b, h, w, s, dtype=torch.float16, device=DEV, seed=b + h)
    with torch.no_grad():
        _bar(opt(x, t, c).sample, m16(x, t, c).sample, m32(x.float(), t, c.float()).sample)
    assert len(opt.variants) == 1


@pytest.mark.parametrize("b,h,w", [(1, 512, 512), (1, 768, 768), (3, 264, 200)])
def test_vae_fp16(b, h, w):
    key = "_vae"
    if not hasattr(test_vae_fp16, key):
        m16, m32 = models.vae_decoder(torch.float16, DEV), models.vae_decoder(torch.float32, DEV)
        setattr(test_vae_fp16, key, (m16, m32, blade.optimize(m16, models.vae_inputs(1, 512, 512, dtype=torch.float16, device=DEV))))
    m16, m32, opt = getattr(test_vae_fp16, key)
    (z,) = models.vae_inputs(b, h, w, dtype=torch.float16, device=DEV, seed=h)
    with torch.no_grad():
        _bar(opt(z), m16(z), m32(z.float()))


@pytest.mark.parametrize("b,s", [(2, 77), (1, 19), (3, 5)])
def test_clip_fp16(b, s):
    key = "_clip"
    if not hasattr(test_clip_fp16, key):
        m16, m32 = models.clip_text_encoder(torch.float16, DEV), models.clip_text_encoder(torch.float32, DEV)
        setattr(test_clip_fp16, key, (m16, m32, blade.optimize(m16, models.clip_inputs(2, 77, device=DEV))))
    m16, m32, opt = getattr(test_clip_fp16, key)
    (ids,) = models.clip_inputs(b, s, device=DEV, seed=s)
    with torch.no_grad():
        _bar(opt(ids).last_hidden_state, m16(ids).last_hidden_state, m32(ids).last_hidden_state)
