"""``Config.precompile_guard_classes`` on the SD 1.5 UNet (GPU, fp16; skipped without CUDA): the
guard classes next to the compile shape (an odd latent height, an odd width, both) are compiled in
the background after ``blade.optimize``; a call in one of them then costs a run, not a capture
(issue 8, item 4: a new guard class's first call at most 2 s). Prints the times it measures."""

from __future__ import annotations

import time

import pytest
import torch

import blade
from blade import models
from tests.gpu.test_unet_fuzz import COMPILE_SHAPE, check_shape, unet_call_inputs

pytestmark = pytest.mark.gpu


def test_sd15_unet_neighbour_classes_are_precompiled(capfd):
    dev = "cuda"
    m16, m32 = models.unet(torch.float16, dev), models.unet(torch.float32, dev)
    b, h, w = COMPILE_SHAPE
    start = time.perf_counter()
    opt = blade.optimize(m16, unet_call_inputs(b, h, w, 77, 768, dev, 0),
                         config=blade.Config(enable_fp16=True, precompile_guard_classes=3))
    compiled = time.perf_counter() - start
    assert opt.wait_precompiled(timeout=420), "background compiles still running after 420 s"
    background = time.perf_counter() - start - compiled
    err = capfd.readouterr().err
    assert err.count("precompiled in the background") >= 2, err
    with torch.no_grad():  # the module's first call at all (loads every kernel, converts weights)
        opt(*unet_call_inputs(*COMPILE_SHAPE, 77, 768, dev, 0))
    firsts = []
    for seed, (b, h, w) in enumerate([(3, 65, 89), (1, 64, 71), (2, 57, 43), (3, 64, 64)]):
        x, t, ctx = unet_call_inputs(b, h, w, 77, 768, dev, 100 + seed)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            opt(x, t, ctx)
        torch.cuda.synchronize()
        firsts.append(time.perf_counter() - t0)
        check_shape(opt, m16, m32, b, h, w, 768, dev, seed=200 + seed)
    with capfd.disabled():  # printed past the capture (capfd takes stdout too)
        print(f"\nSD 1.5 UNet: compile {compiled:.1f} s, 3 neighbour classes in the background {background:.1f} s, "
              f"first calls of new shapes (after one call at the compile shape) {', '.join(f'{s:.2f}' for s in firsts)} s; "
              f"{len(opt.variants)} variants")
    assert "compiling variant" not in capfd.readouterr().err
    assert max(firsts) <= 2.0, firsts
    assert opt.eager_calls == 0
