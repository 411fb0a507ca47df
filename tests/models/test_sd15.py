"""SD 1.5 UNet, VAE decoder and CLIP text encoder (public configs, random weights): imported once,
executed by the reference executor at several shapes, matching eager in fp32."""

import pytest
import sympy
import torch

import blade
from blade import models
from blade.ir import entry_function, print_module, read_symbol_table, walk_ops

pytestmark = pytest.mark.model


def _rel_err(out, ref):
    return (out - ref).abs().max().item() / ref.abs().max().item()


@pytest.fixture(scope="module")
def unet():
    model = models.unet()
    opt = blade.optimize(model, models.unet_inputs(2, 128, 128), config=blade.Config(check_shapes=True))
    return model, opt


def test_unet_ir_is_symbolic(unet):
    _, opt = unet
    module = opt.report.module
    table = read_symbol_table(module)
    assert [i.origin for i in table.symbols.values()] == [
        "sample.size(0)", "sample.size(2) / 8", "sample.size(3) / 8", "encoder_hidden_states.size(1)"]
    fn = entry_function(module)
    s0, s1, s2, s3 = (sympy.Symbol(n, integer=True, positive=True) for n in ("s0", "s1", "s2", "s3"))
    assert fn.body.block.args[0].type.shape == (s0, 4, 8 * s1, 8 * s2)
    assert fn.function_type.outputs.data[0].shape == (s0, 4, 8 * s1, 8 * s2)
    symbols = {s0, s1, s2, s3}
    for op in walk_ops(fn):
        for r in op.results:
            for d in r.type.shape:
                assert d is not None and d.free_symbols <= symbols
    # the downsampled resolutions are plain multiples, not floor expressions
    text = print_module(module)
    assert "4*s1" in text and "2*s1" in text and "floordiv" not in text


def test_unet_generic_form_parses_in_upstream_mlir(unet):
    mlir_ir = pytest.importorskip("torch_mlir.ir")
    ctx = mlir_ir.Context()
    ctx.allow_unregistered_dialects = True
    parsed = mlir_ir.Module.parse(print_module(unet[1].report.module, generic=True), ctx)
    assert str(parsed).count('"blade.conv"(') == 98


@pytest.mark.parametrize("batch,height,width,seq", [(2, 128, 128, 77), (1, 192, 320, 77), (3, 64, 128, 19)])
def test_unet_matches_eager_on_one_compile(unet, batch, height, width, seq):
    model, opt = unet
    inputs = models.unet_inputs(batch, height, width, seq, seed=batch + height)
    with torch.no_grad():
        out, ref = opt(*inputs).sample, model(*inputs).sample
    assert out.shape == (batch, 4, height // 8, width // 8)
    assert _rel_err(out, ref) < 1e-4
    assert len(opt.variants) == 1


def test_unet_odd_latent_compiles_one_more_variant(unet):
    model, opt = unet
    inputs = models.unet_inputs(1, 8 * 9, 8 * 13, 77)  # latent 9x13: diffusers takes another branch
    with torch.no_grad():
        out, ref = opt(*inputs).sample, model(*inputs).sample
    assert _rel_err(out, ref) < 1e-4
    assert len(opt.variants) == 2


@pytest.fixture(scope="module")
def vae():
    model = models.vae_decoder()
    return model, blade.optimize(model, models.vae_inputs(1, 128, 128), config=blade.Config(check_shapes=True))


@pytest.mark.parametrize("batch,height,width", [(1, 128, 128), (3, 72, 104), (2, 64, 200)])
def test_vae_decoder_matches_eager(vae, batch, height, width):
    model, opt = vae
    (z,) = models.vae_inputs(batch, height, width, seed=height)
    with torch.no_grad():
        out, ref = opt(z), model(z)
    assert out.shape == (batch, 3, height, width)
    assert _rel_err(out, ref) < 1e-4
    assert len(opt.variants) == 1


@pytest.fixture(scope="module")
def clip():
    model = models.clip_text_encoder()
    return model, blade.optimize(model, models.clip_inputs(2, 77), config=blade.Config(check_shapes=True))


@pytest.mark.parametrize("batch,seq", [(2, 77), (1, 19), (3, 5)])
def test_clip_matches_eager(clip, batch, seq):
    model, opt = clip
    (ids,) = models.clip_inputs(batch, seq, seed=seq)
    with torch.no_grad():
        out, ref = opt(ids), model(ids)
    for name in ("last_hidden_state", "pooler_output"):
        assert _rel_err(getattr(out, name), getattr(ref, name)) < 1e-4
    assert type(out) is type(ref)
    assert len(opt.variants) == 1


def test_every_generated_kernel_compiles_for_sm90(unet, vae, clip, tmp_path):
    """CI has no GPU; Triton still compiles every kernel the three models need to an sm_90 cubin."""
    from blade.codegen.aot import compile_plans
    from blade.codegen.emit import plan_kernel
    from blade.dialects.kernel import FusedOp

    plans = {}
    for _, opt in (unet, vae, clip):
        for op in opt.report.module.walk():
            if isinstance(op, FusedOp):
                plan = plan_kernel(op)
                plans[plan.name] = plan
    assert len(plans) >= 15
    compile_plans(list(plans.values()), target=("cuda", 90, 32), root=tmp_path, jobs=2)
    cubins = {p.name.split(".")[0] for p in (tmp_path / "triton").rglob("*.cubin")}
    for plan in plans.values():
        for v in plan.variants:
            assert v.kernel in cubins, f"no cubin for {v.kernel}"
