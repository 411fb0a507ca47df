"""The model zoo on the GPU: every model of ``blade.models.ZOO`` in its full public config, compiled
once with ``Config(enable_fp16=True)`` from the float32 model and served at three shapes (batch 1
and an odd size among them) through the generated Triton kernels.

The fp16 bar (``tests/gpu/test_gpu_kernels._bar``): on the same inputs, Blade's error against
the float32 eager reference is at most twice eager float16's. Both references run on the GPU;
each model is built once and freed after its test, so the file fits in one H200.

``check_fp16_bar`` is the whole test; ``tests/models/test_zoo.py`` runs it on the CPU with
reduced configs (reference executor), so the code path is exercised without a GPU.
"""

import copy
import gc

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade import models
from tests.gpu.test_gpu_kernels import _bar

#: models whose GPU run is expected to fail, with the reason (strict: a fix makes the test fail
#: until the entry is removed)
BROKEN_GPU: dict[str, str] = {}


def _tensors(out):
    return [x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor)]


def check_fp16_bar(name: str, device: str, reduced: bool) -> blade.optimize:
    """Compile ``name`` once (fp16 from the fp32 model), serve its test shapes, and check every
    output tensor against the fp16 bar; returns the optimized module."""
    zoo = models.ZOO[name]
    m32 = zoo.build(dtype=torch.float32, device=device, reduced=reduced)
    m16 = copy.deepcopy(m32).half()
    example = zoo.reduced_example if reduced else zoo.example
    args, kwargs = zoo.inputs(example, reduced=reduced, device=device)
    opt = blade.optimize(m32, args, model_kwargs=kwargs, config=blade.Config(enable_fp16=True))
    shapes = zoo.reduced_shapes if reduced else zoo.shapes
    for i, shape in enumerate(shapes):
        args, kwargs = zoo.inputs(shape, reduced=reduced, device=device, seed=20 + i)
        half = pytree.tree_map(lambda t: t.half() if isinstance(t, torch.Tensor) and t.is_floating_point()
                               and t.dim() > 0 else t, (args, kwargs))
        with torch.no_grad():
            out = opt(*args, **kwargs)
            ref32 = m32(*args, **kwargs)
            ref16 = m16(*half[0], **half[1])
        assert type(out) is type(ref32)
        outs, r32s, r16s = _tensors(out), _tensors(ref32), _tensors(ref16)
        assert len(outs) == len(r32s) == len(r16s) > 0
        for o, r16, r32 in zip(outs, r16s, r32s):
            assert o.shape == r32.shape, f"{name} at {shape}: {tuple(o.shape)} vs {tuple(r32.shape)}"
            assert torch.isfinite(o).all(), f"{name} at {shape}: non-finite output"
            try:
                _bar(o.half() if o.dtype == torch.float32 else o, r16, r32.float())
            except AssertionError as e:
                raise AssertionError(f"{name} at {shape}: {e}") from None
    return opt


@pytest.mark.gpu
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=BROKEN_GPU[n], strict=True))
                                  if n in BROKEN_GPU else n for n in models.ZOO])
def test_zoo_fp16_bar(name):
    try:
        opt = check_fp16_bar(name, "cuda", reduced=False)
        codes = len({id(v.executor.code) for v in opt.variants})  # guard classes may share code
        assert codes == 1, [v.program.report.format() for v in opt.variants]
        assert opt.eager_calls == 0
    finally:
        gc.collect()
        torch.cuda.empty_cache()
