"""diffusers LoRA on a compiled UNet (issue 9, item 5): adapters loaded, fused, unfused and
unloaded after ``blade.optimize`` give eager's outputs, never a stale program.

PEFT's adapter layers change what they compute through plain attributes (``merge()`` for
``fuse_lora``: LoRA merged into the base weight in place with ``weight.data += delta``, and the
layer then skips its LoRA branch). Loading adapters replaces submodules (the structure watch sees
it and the module compiles again); ``merge``/``unmerge``/``set_adapter``/scales count as changes
too (``runtime/structure_watch.TUNER_METHODS``): a program traced before ``fuse_lora`` would add
LoRA a second time. ``fuse_lora()`` followed by ``unload_lora()`` puts the original layers back with
merged weights: the compiled program is kept (``StructureSnapshot``), nothing recompiles.
Reduced SD 1.5 UNet config on CPU (reference executor); runs where peft is installed."""

import pytest
import torch

import blade
from blade import models

peft = pytest.importorskip("peft")

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def _unet():
    torch.manual_seed(0)
    zoo = models.ZOO["sd15_unet"]
    unet = zoo.build(dtype=torch.float32, device="cpu", reduced=True)
    args, kwargs = zoo.inputs(zoo.reduced_example, reduced=True)
    return unet, args, kwargs


def _check(opt, unet, args, kwargs):
    with torch.no_grad():
        got, want = opt(*args, **kwargs).sample, unet(*args, **kwargs).sample
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def _lora():
    return peft.LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS, init_lora_weights=False)


def test_fuse_and_unload_keeps_the_compiled_program(capfd):
    unet, args, kwargs = _unet()
    opt = blade.optimize(unet, args, model_kwargs=kwargs)
    _check(opt, unet, args, kwargs)
    code = opt.variants[0].executor.code
    unet.add_adapter(_lora())
    unet.fuse_lora(lora_scale=0.7)
    unet.unload_lora()
    _check(opt, unet, args, kwargs)  # eager's output with the LoRA merged
    assert opt.variants[0].executor.code is code, "recompiled although the structure is the compiled one"
    assert "compiled variants are kept" in capfd.readouterr().err


def test_fuse_and_unfuse_with_adapters_loaded_never_answer_stale():
    unet, args, kwargs = _unet()
    opt = blade.optimize(unet, args, model_kwargs=kwargs)
    unet.add_adapter(_lora())
    _check(opt, unet, args, kwargs)  # adapters loaded: a new structure, compiled again
    unet.fuse_lora(lora_scale=1.0)
    _check(opt, unet, args, kwargs)  # before the fix: LoRA applied twice (max error 0.4)
    unet.unfuse_lora()
    _check(opt, unet, args, kwargs)
    unet.disable_lora()
    _check(opt, unet, args, kwargs)
    unet.enable_lora()
    _check(opt, unet, args, kwargs)
    assert opt.eager_calls == 0
