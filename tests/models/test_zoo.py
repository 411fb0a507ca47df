"""The model zoo on the CPU: every model of ``blade.models.ZOO`` in its reduced config (the same
block types, attention layouts, embeddings and output structure as the public model, a few
channels and layers), compiled once with the reference executor in fp32 and served at three more
shapes (batch 1 and an odd size among them), each matching eager.

Each test states how many variants the shapes need and which ops still run in eager PyTorch
(none, today); a new fallback or a new variant fails the test until it is explained here.
"""

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade import models

#: variants the reduced shapes need (the example's guard class serves them all unless noted)
VARIANTS = {name: 1 for name in models.ZOO}

#: ops allowed to run in eager PyTorch, by model, with the reason
FALLBACKS: dict[str, dict[str, str]] = {}

#: models that do not compile yet, with the reason (strict: fixing them makes the test fail here
#: until the entry is removed)
BROKEN: dict[str, str] = {}  # model -> why it cannot pass yet (strict xfail)


def flat_outputs(out):
    """The tensors of a model output, in pytree order, and the structure without them."""
    leaves, spec = pytree.tree_flatten(out)
    return [x for x in leaves if isinstance(x, torch.Tensor)], spec


def assert_matches(out, ref, rtol):
    """Same structure (output classes, cache objects, tuples) and every tensor within ``rtol`` of
    eager's largest magnitude."""
    got, spec = flat_outputs(out)
    want, ref_spec = flat_outputs(ref)
    assert type(out) is type(ref)
    assert str(spec) == str(ref_spec), f"output structure {spec} differs from eager's {ref_spec}"
    assert len(got) == len(want) > 0
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"output {i}: {g.shape}/{g.dtype} vs {w.shape}/{w.dtype}"
        err = (g.float() - w.float()).abs().max().item()
        assert err <= rtol * max(w.float().abs().max().item(), 1e-6), f"output {i} {tuple(w.shape)}: error {err:.3e}"


def fallback_targets(opt) -> set[str]:
    return {u.target for v in opt.variants for u in v.program.report.unsupported}


def check_zoo_model(name: str, *, reduced: bool, dtype=torch.float32, device="cpu", config=None,
                    rtol=1e-4, bar=None):
    """Compile ``name`` once at its example shape, then serve its test shapes: outputs match eager
    (``rtol``), or pass ``bar(out, ref_outputs_of(shape))`` when given (the GPU's fp16 bar)."""
    zoo = models.ZOO[name]
    model = zoo.build(dtype=dtype, device=device, reduced=reduced)
    example = zoo.reduced_example if reduced else zoo.example
    args, kwargs = zoo.inputs(example, reduced=reduced, dtype=dtype, device=device)
    opt = blade.optimize(model, args, model_kwargs=kwargs, config=config or blade.Config())
    shapes = zoo.reduced_shapes if reduced else zoo.shapes
    assert any(s[0] == 1 for s in shapes) and any(s[0] % 2 == 1 and s[0] > 1 for s in shapes)
    for i, shape in enumerate(shapes):
        args, kwargs = zoo.inputs(shape, reduced=reduced, dtype=dtype, device=device, seed=10 + i)
        with torch.no_grad():
            out = opt(*args, **kwargs)
            if bar is not None:
                bar(model, out, args, kwargs)
            else:
                assert_matches(out, model(*args, **kwargs), rtol)
    return model, opt


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(reason=BROKEN[n], strict=True))
                                  if n in BROKEN else n for n in models.ZOO])
def test_zoo_model_matches_eager(name):
    _, opt = check_zoo_model(name, reduced=True, config=blade.Config(check_shapes=True))
    assert len(opt.variants) == VARIANTS[name], [v.program.report.format() for v in opt.variants]
    assert fallback_targets(opt) == set(FALLBACKS.get(name, {})), opt.report.format()


@pytest.mark.parametrize("name", ["gpt2", "clip2"])
def test_gpu_zoo_code_path_on_cpu(name):
    """tests/gpu/test_zoo.py's check (fp16 compile, fp16 bar against fp32) with reduced configs."""
    from tests.gpu.test_zoo import check_fp16_bar

    opt = check_fp16_bar(name, "cpu", reduced=True)
    assert len(opt.variants) == 1
    if name == "gpt2":
        assert any("DynamicCache" in n for n in opt.report.notes)


def test_bert_with_input_ids_only():
    """BERT called with input_ids alone slices its token-type buffer; export guards on
    'Eq(s1, Min(512, s1)) | Eq(Min(512, s1), 1)' (a disjunction)."""
    model = models.bert(reduced=True)
    (ids,), _ = models.ZOO["bert"].inputs((2, 7), reduced=True)
    opt = blade.optimize(model, (ids,))
    assert len(opt.variants) == 1  # compiled, not answered eagerly
    for b, n in [(1, 7), (3, 13)]:
        (ids,), _ = models.ZOO["bert"].inputs((b, n), reduced=True)
        with torch.no_grad():
            assert_matches(opt(ids), model(ids), 1e-4)
