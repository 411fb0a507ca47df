"""Call patterns of an optimized module behave exactly as eager calls do: arguments bound to
``forward``'s signature (positional, keyword, defaults share one variant), eager's ``TypeError``
for a wrong call, output structure kept, a variant per dtype signature (never a silent cast), and
the eager answer (with a one-line message) for models or calls Blade cannot compile."""

import copy
import dataclasses
import pickle

import pytest
import torch
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput
from transformers.modeling_outputs import BaseModelOutputWithPooling

import blade
from blade.frontend.export import CaptureError


def compiled_count(opt) -> int:
    """Variants with their own compiled code (a variant may reuse another's)."""
    return len({id(v.executor) for v in opt.variants})


class TinyUNet(torch.nn.Module):
    """diffusers' UNet calling convention: ``(sample, timestep, encoder_hidden_states, ...,
    return_dict=True)`` returning ``UNet2DConditionOutput`` or a tuple."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 4)
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None, attention_mask=None,
                return_dict: bool = True):
        ctx = self.proj(encoder_hidden_states).mean(1)[:, :, None, None]
        out = self.conv(sample) * timestep + ctx
        if class_labels is not None:
            out = out + class_labels[:, None, None, None]
        if not return_dict:
            return (out,)
        return UNet2DConditionOutput(sample=out)


def unet_args(batch=2, h=6, w=5):
    return torch.randn(batch, 4, h, w), torch.tensor(3.0), torch.randn(batch, 7, 8)


def test_keyword_positional_and_default_calls_share_one_variant(capfd):
    model = TinyUNet().eval()
    x, t, ctx = unet_args()
    opt = blade.optimize(model, (x, t, ctx))
    capfd.readouterr()
    x, t, ctx = unet_args(3, 9, 4)
    ref = model(x, t, ctx).sample
    for out in (opt(x, t, ctx), opt(x, t, encoder_hidden_states=ctx),
                opt(sample=x, timestep=t, encoder_hidden_states=ctx, class_labels=None, return_dict=True),
                opt(x, t, ctx, None, None, True)):
        assert isinstance(out, UNet2DConditionOutput)
        torch.testing.assert_close(out.sample, ref)
    # the diffusers pipeline's call: keyword context, return_dict=False -> a tuple, same code
    out = opt(x, t, encoder_hidden_states=ctx, return_dict=False)
    assert isinstance(out, tuple) and len(out) == 1
    torch.testing.assert_close(out[0], ref)
    err = capfd.readouterr().err
    assert "compiling variant" not in err
    assert compiled_count(opt) == 1
    # a non-tensor argument that changes the program still compiles its own variant
    labels = torch.randn(3)
    torch.testing.assert_close(opt(x, t, ctx, class_labels=labels).sample, model(x, t, ctx, labels).sample)
    assert compiled_count(opt) == 2


def test_keyword_call_after_positional_example():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval()

    class ByName(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = model

        def forward(self, x):
            return self.body(x)

    opt = blade.optimize(ByName().eval(), (torch.randn(2, 4),))
    x = torch.randn(5, 4)
    torch.testing.assert_close(opt(x=x), model(x))
    torch.testing.assert_close(opt(x), model(x))
    assert len(opt.variants) == 1


def test_wrong_arguments_raise_eagers_type_error_before_any_compile(capfd):
    model = TinyUNet().eval()
    opt = blade.optimize(model, unet_args())
    capfd.readouterr()
    x, t, ctx = unet_args()
    for args, kwargs in [((x, t), {}), ((x, t, ctx, None, None, True, 5), {}), ((x, t, ctx), {"colour": 1}),
                         ((x, t, ctx), {"sample": x})]:
        with pytest.raises(TypeError) as eager:
            model(*args, **kwargs)
        with pytest.raises(TypeError) as ours:
            opt(*args, **kwargs)
        assert str(ours.value) == str(eager.value)
    assert len(opt.variants) == 1 and "compiling" not in capfd.readouterr().err


def test_output_structures_are_kept():
    class Hf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, input_ids, return_dict=True):
            h = self.lin(input_ids)
            out = BaseModelOutputWithPooling(last_hidden_state=h, pooler_output=h.mean(1))
            return out if return_dict else out.to_tuple()

    class Dict(torch.nn.Module):
        def forward(self, x):
            return {"a": x + 1, "b": [x * 2, (x - 1,)], "n": 3}

    model = Hf().eval()
    opt = blade.optimize(model, (torch.randn(2, 5, 4),))
    x = torch.randn(3, 7, 4)
    out = opt(x)
    assert isinstance(out, BaseModelOutputWithPooling) and out.hidden_states is None
    torch.testing.assert_close(out.pooler_output, model(x).pooler_output)
    tup = opt(x, return_dict=False)
    assert isinstance(tup, tuple) and len(tup) == 2
    torch.testing.assert_close(tup[0], model(x).last_hidden_state)
    assert compiled_count(opt) == 1  # return_dict=False reuses the compiled code
    out = blade.optimize(Dict().eval(), (torch.randn(2, 3),))(torch.ones(4, 3))
    assert out["n"] == 3 and isinstance(out["b"][1], tuple)
    torch.testing.assert_close(out["b"][1][0], torch.zeros(4, 3))


@dataclasses.dataclass
class _Inner:
    t: torch.Tensor
    n: int = 3


@dataclasses.dataclass(frozen=True)
class _Frozen:
    a: torch.Tensor
    b: torch.Tensor | None = None


@dataclasses.dataclass
class _Outer:
    x: torch.Tensor
    inner: _Inner
    pair: tuple
    tag: str = "out"


#: outputs a forward may build from plain dataclasses pytree does not know (each compiled in a
#: fresh module; the classes are registered the first time one is traced)
DATACLASS_OUTPUTS = {
    "flat": lambda x: _Frozen(x * 2, x.sum(-1)),
    "none_field": lambda x: _Frozen(x - 1),
    "nested": lambda x: _Outer(x + 1, _Inner(x.mean(-1), 5), (x * 3, _Frozen(x.amax(-1)))),
    "in_containers": lambda x: {"o": [_Inner(x.relu())], "k": (x, _Frozen(x * 0.5, x))},
}


@pytest.mark.parametrize("kind", DATACLASS_OUTPUTS)
def test_dataclass_outputs_are_compiled_and_rebuilt(kind):
    make = DATACLASS_OUTPUTS[kind]

    class M(torch.nn.Module):
        def forward(self, x):
            return make(torch.tanh(x))

    model = M().eval()
    opt = blade.optimize(model, (torch.randn(2, 5, 4),))
    assert opt.variants, "not compiled"
    for shape in [(2, 5, 4), (1, 3, 4), (3, 7, 4)]:
        x = torch.randn(*shape)
        got, want = opt(x), model(x)
        got_leaves, got_spec = torch.utils._pytree.tree_flatten(got)
        want_leaves, want_spec = torch.utils._pytree.tree_flatten(want)
        assert got_spec == want_spec and type(got) is type(want)
        for g, w in zip(got_leaves, want_leaves):
            if isinstance(w, torch.Tensor):
                torch.testing.assert_close(g, w)
            else:
                assert g == w
    assert opt.eager_calls == 0


def test_deep_copy_is_an_independent_optimized_module(capfd):
    torch.manual_seed(5)
    model = TinyUNet().eval()
    opt = blade.optimize(model, unet_args())
    twin = copy.deepcopy(opt)
    assert type(twin) is type(opt) and twin.original is not model
    args = unet_args(3, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(twin(*args).sample, model(*args).sample)
        twin.original.conv.weight.mul_(2)  # the copy's weights are its own: the original is not changed
        torch.testing.assert_close(opt(*args).sample, model(*args).sample)
        torch.testing.assert_close(twin(*args).sample, twin.original(*args).sample)
        assert not torch.allclose(twin(*args).sample, opt(*args).sample)
    assert twin.eager_calls == 0 and opt.eager_calls == 0
    with pytest.raises(TypeError, match="blade.save"):
        pickle.dumps(opt)


def test_hooks_present_at_compile_are_named_with_what_they_lose(capfd):
    torch.manual_seed(6)
    model = TinyUNet().eval()
    seen = []
    handle = model.conv.register_forward_hook(lambda mod, inputs, out: seen.append(out.shape) or out * 2)
    opt = blade.optimize(model, unet_args())
    err = capfd.readouterr().err
    assert "forward hooks on conv" in err and "do not run on calls" in err
    assert any("forward hooks on conv" in n for n in opt.report.notes)
    seen.clear()
    args = unet_args(3, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(opt(*args).sample, model(*args).sample)  # the doubling is compiled in
    handle.remove()
    blade.optimize(TinyUNet().eval(), unet_args())
    assert "forward hooks" not in capfd.readouterr().err


def test_a_new_argument_structure_is_said_on_one_line(capfd):
    class Sum(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, xs: list, scale: float = 1.0, extra=None):
            return sum(self.lin(x) for x in xs) * scale

    model = Sum().eval()
    opt = blade.optimize(model, ([torch.randn(2, 4)] * 3,))
    capfd.readouterr()
    xs = [torch.randn(1, 4) for _ in range(2)]
    torch.testing.assert_close(opt(xs, extra={"k": torch.ones(1)}), model(xs))
    line = next(ln for ln in capfd.readouterr().err.splitlines() if "compiling variant 1" in ln)
    assert "the arguments' structure call([*, *], scale=*, extra={k: *}) differs from the compiled " \
           "call([*, *, *], scale=*, extra=*)" in line, line


# ------------------------------------------------------------------ dtypes: eager semantics
class Affine(torch.nn.Module):
    def forward(self, x):
        return x * 2 + 1


def test_int64_input_is_not_cast_to_the_compiled_float32():
    opt = blade.optimize(Affine().eval(), (torch.randn(2, 3),))
    x = torch.full((2, 3), 2**24 + 1, dtype=torch.int64)
    out = opt(x)
    assert out.dtype == torch.int64
    assert torch.equal(out, x * 2 + 1)  # 33554435, not float32's 33554432
    assert len(opt.variants) == 2
    opt(torch.randn(4, 5))  # float32 still reaches the first variant
    assert len(opt.variants) == 2


def test_float64_input_to_a_float32_mlp_follows_eager():
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    opt = blade.optimize(model, (torch.randn(2, 4),))
    x = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError) as eager:
        model(x)
    with pytest.raises(RuntimeError) as ours:
        opt(x)
    assert str(ours.value) == str(eager.value)
    model64 = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).double().eval()
    opt = blade.optimize(model64, (torch.randn(2, 4, dtype=torch.float64),))
    torch.testing.assert_close(opt(x), model64(x), rtol=1e-12, atol=1e-12)
    assert opt(x).dtype == torch.float64


def test_float_indices_into_an_embedding_raise_like_eager_and_compile_once(capfd):
    model = torch.nn.Embedding(10, 4).eval()
    opt = blade.optimize(model, (torch.tensor([[1, 2, 3]]),))
    capfd.readouterr()
    bad = torch.tensor([[1.0, 2.0]])
    with pytest.raises(RuntimeError) as eager:
        model(bad)
    for _ in range(2):
        with pytest.raises(RuntimeError) as ours:
            opt(bad)
        assert str(ours.value) == str(eager.value)
    err = capfd.readouterr().err
    assert err.count("compiling variant") == 1  # the failed signature is remembered
    # said as inputs the module itself refuses, not as a Blade failure (session 19)
    assert "fail in eager PyTorch too" in err and "ERROR" not in err, err
    ids = torch.tensor([[4, 5], [6, 7]])
    torch.testing.assert_close(opt(ids), model(ids))


def test_fp16_converts_only_the_compiled_float_dtype():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
    opt = blade.optimize(model, (torch.randn(2, 4),), config=blade.Config(enable_fp16=True))
    x = torch.randn(3, 4)
    assert opt(x).dtype == torch.float32
    torch.testing.assert_close(opt(x), model(x), rtol=2e-2, atol=2e-2)
    x64 = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(RuntimeError):  # eager raises on float64 into float32 weights; so does Blade
        opt(x64)


# ------------------------------------------------------------------ compiles that go wrong
def test_variant_that_refuses_its_own_call_is_an_internal_error_answered_eagerly(capfd, monkeypatch):
    opt = blade.optimize(Affine().eval(), (torch.randn(2, 3),))
    compiles = []
    real = type(opt).compile_variant

    def broken_compile(self, args, kwargs, **options):  # a variant whose signature is not the call's
        compiles.append(1)
        v = real(self, args, kwargs, **options)
        v.signature = dataclasses.replace(v.signature, training=not v.signature.training)
        return v

    monkeypatch.setattr(type(opt), "compile_variant", broken_compile)
    x = torch.full((2, 3), 2**24 + 1, dtype=torch.int64)  # int64 needs a variant of its own
    for _ in range(2):
        assert torch.equal(opt(x), x * 2 + 1)
    err = capfd.readouterr().err
    assert "INTERNAL ERROR" in err and "does not accept" in err
    assert len(compiles) == 1  # never compiled again for that signature


class SignBranch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.lin(x) * 2
        return x - 1


def test_data_dependent_branch_runs_eagerly_and_advice_never_misleads(capfd):
    model = SignBranch().eval()
    before = {n: (p, p.detach().clone()) for n, p in model.named_parameters()}
    opt = blade.optimize(model, (torch.ones(2, 3),))
    for n, p in model.named_parameters():  # the failed capture left the module as it was
        assert p is before[n][0] and type(p) is torch.nn.Parameter and torch.equal(p, before[n][1])
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("[blade]")]
    assert len(lines) == 1
    assert "data-dependent control flow" in lines[0] and "if x.sum() > 0:" in lines[0]
    assert "torch.cond" in lines[0] and "allow_tracing=True" not in lines[0]
    for x in (torch.ones(4, 3), -torch.ones(5, 3)):
        torch.testing.assert_close(opt(x), model(x))
    with pytest.raises(CaptureError, match="data-dependent control flow.*if x.sum"):
        blade.optimize(model, (torch.ones(2, 3),), config=blade.Config(fallback="strict"))


def test_tracing_a_value_dependent_branch_is_refused_not_specialised(capfd):
    model = SignBranch().eval()
    opt = blade.optimize(model, (torch.ones(2, 3),), allow_tracing=True)
    assert "recorded one path through Python control flow" in capfd.readouterr().err
    x = -torch.ones(4, 3)  # the branch the trace did not take
    torch.testing.assert_close(opt(x), model(x))
    with pytest.raises(CaptureError, match="Python boolean"):
        blade.optimize(model, (torch.ones(2, 3),), allow_tracing=True, config=blade.Config(fallback="strict"))


def test_torch_cond_model_matches_eager_on_both_branches():
    class Cond(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def forward(self, x):
            return torch.cond(x.sum() > 0, lambda x: self.lin(x) * 2, lambda x: x - 1, (x,))

    model = Cond().eval()
    opt = blade.optimize(model, (torch.ones(2, 3),))
    for x in (torch.ones(4, 3), -torch.ones(4, 3)):
        torch.testing.assert_close(opt(x), model(x))


def test_export_refusal_runs_the_module_eagerly_with_one_line(capfd):
    class Close(torch.nn.Module):
        def forward(self, x, y):
            return torch.allclose(x, y), x + y

    model = Close().eval()
    opt = blade.optimize(model, (torch.ones(2, 3), torch.ones(2, 3)))
    lines = [ln for ln in capfd.readouterr().err.splitlines() if ln.startswith("[blade]")]
    assert len(lines) == 1 and "aten.allclose" in lines[0] and "runs in eager PyTorch" in lines[0]
    same, total = opt(torch.ones(2, 3), torch.zeros(2, 3))
    assert same is False and torch.equal(total, torch.ones(2, 3))
    with pytest.raises(CaptureError, match="allclose"):
        blade.optimize(model, (torch.ones(2, 3), torch.ones(2, 3)), config=blade.Config(fallback="strict"))


def test_mode_switch_after_optimize_follows_the_original():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5)).eval()
    opt = blade.optimize(model, (torch.randn(2, 4),))
    assert not opt.training
    opt.train()
    assert model.training and opt.training
    torch.manual_seed(1)
    x = torch.randn(64, 4) + 3
    out = opt(x)  # training-mode dropout: about half the values zeroed, as eager does
    zeros = (out == 0).float().mean().item()
    assert 0.3 < zeros < 0.7
    model.eval()
    assert not opt.training
    torch.testing.assert_close(opt(x), model(x))


def test_non_tensor_argument_reuse_compares_lifted_constants():
    class Scaled(torch.nn.Module):
        def forward(self, x, scale: float = 2.0, return_dict: bool = True):
            y = x * torch.tensor(scale)  # a lifted constant: the graph is the same for every scale
            return {"y": y} if return_dict else (y,)

    model = Scaled().eval()
    opt = blade.optimize(model, (torch.randn(2, 3),))
    x = torch.randn(4, 3)
    torch.testing.assert_close(opt(x, return_dict=False)[0], x * 2)
    assert compiled_count(opt) == 1
    torch.testing.assert_close(opt(x, 3.0)["y"], x * 3)  # another constant value: its own code
    assert compiled_count(opt) == 2


class TakesKwargs(torch.nn.Module):
    """transformers' ``forward(input_ids, ..., **kwargs)``: options such as
    ``output_hidden_states=True`` arrive through ``**kwargs``."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 3)

    def forward(self, x, scale=1.0, **extra):
        y = self.proj(x) * scale
        if extra.get("flag"):
            y = y + 1
        if "bias" in extra:
            y = y + extra["bias"]
        if "repeat" in extra:
            y = torch.cat([y] * 2, 0)[: extra["repeat"]]
        return (y, extra["bias"] * 2) if extra.get("both") else y


@pytest.mark.parametrize("extra", [
    {"flag": True}, {"bias": "tensor"}, {"flag": False, "bias": "tensor"}, {"both": True, "bias": "tensor"},
    {"repeat": 2}, {"flag": True, "repeat": 3},
])
def test_values_passed_through_var_keyword_arguments_compile(extra):
    """Any value passed through ``**kwargs`` made torch.export fail ("Must provide a tree_name"), so
    the whole model ran in eager PyTorch (``llama(ids, output_hidden_states=True)``)."""
    torch.manual_seed(0)
    model = TakesKwargs().eval()

    def call(batch, seed):
        g = torch.Generator().manual_seed(seed)
        kw = {k: (torch.randn(3, generator=g) if v == "tensor" else v) for k, v in extra.items()}
        return (torch.randn(batch, 3, generator=g),), kw

    args, kw = call(2, 0)
    opt = blade.optimize(model, args, model_kwargs=kw)
    assert opt.variants, "not compiled"
    for batch, seed in [(2, 1), (1, 2), (5, 3)]:
        args, kw = call(batch, seed)
        with torch.no_grad():
            got, want = opt(*args, **kw), model(*args, **kw)
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(g, w)
    assert opt.eager_calls == 0


def test_assigning_the_optimized_module_to_the_models_own_forward_is_refused_by_name():
    """``model.forward = blade.optimize(model, ...)`` (torch.compile's habit) made the module call
    itself (a RecursionError); it is refused with the assignment that works."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
    model.forward = blade.optimize(model, (torch.randn(2, 4),))
    with pytest.raises(TypeError, match="assigned to the model's own forward"):
        model(torch.randn(3, 4))


class Activated(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 5)

    def forward(self, x, act: str = "tanh", generator=None, noise: bool = False):
        y = self.lin(x)
        if noise:  # draws from the caller's generator: only eager can do that
            y = y + torch.randn(y.shape, generator=generator)
        return torch.relu(y) if act == "relu" else torch.tanh(y)


def test_string_arguments_are_constants_of_their_variant():
    torch.manual_seed(0)
    model = Activated().eval()
    opt = blade.optimize(model, (torch.randn(2, 5),))
    for act in ("tanh", "relu", "tanh", "relu"):
        for batch in (1, 3):
            x = torch.randn(batch, 5)
            torch.testing.assert_close(opt(x, act), model(x, act))
            torch.testing.assert_close(opt(x, act=act), model(x, act=act))
    assert opt.eager_calls == 0
    assert {v.signature.constants[0][1] for v in opt.variants} == {"tanh", "relu"}


def test_a_generator_argument_the_program_does_not_draw_from_compiles_once():
    """diffusers' pipelines call ``vae.decode(z, generator=g)`` with a new generator per image:
    one variant serves them all (it used to fail the capture, and every call ran eagerly)."""
    torch.manual_seed(0)
    model = Activated().eval()
    opt = blade.optimize(model, (torch.randn(2, 5),), model_kwargs={"generator": torch.Generator()})
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(3, 5)
        torch.testing.assert_close(opt(x, generator=g), model(x, generator=g))
        assert g.initial_seed() == seed
    assert opt.eager_calls == 0 and len(opt.variants) == 1


def test_a_generator_argument_the_program_draws_from_runs_eagerly():
    torch.manual_seed(0)
    model = Activated().eval()
    opt = blade.optimize(model, (torch.randn(2, 5),), model_kwargs={"generator": torch.Generator(), "noise": True})
    assert not opt.variants, "a program drawing from the example's generator was compiled"
    x = torch.randn(2, 5)
    got = opt(x, generator=torch.Generator().manual_seed(7), noise=True)
    want = model(x, generator=torch.Generator().manual_seed(7), noise=True)
    torch.testing.assert_close(got, want)
    assert opt.eager_calls >= 1



class _Branchy(torch.nn.Module):
    def forward(self, x):
        return x.softmax(-1) * 2 if x.shape[-1] > 4 else x.tanh()


def test_a_failed_compile_for_an_empty_batch_leaves_later_shapes_compiling(capfd, monkeypatch):
    """A compile for a call with a zero-size dimension that fails (a lowering that divides by a
    size: GroupNorm's chunking on the GPU) answers that call eagerly, and later empty calls at once,
    said once; it never marks the call structure eager (every later call needing a new variant
    then ran eagerly)."""
    model = _Branchy().eval()
    opt = blade.optimize(model, (torch.randn(2, 8),))
    real, attempts = type(opt).compile_variant, []

    def failing_when_empty(self, args, kwargs, **kw):
        attempts.append(tuple(args[0].shape))
        if args[0].numel() == 0:
            raise ZeroDivisionError("a size of 0 divides")
        return real(self, args, kwargs, **kw)

    monkeypatch.setattr(type(opt), "compile_variant", failing_when_empty)
    for shape in [(0, 8), (0, 3), (3, 0), (2, 3), (1, 7), (5, 2)]:
        x = torch.randn(*shape)
        got, want = opt(x), model(x)
        assert got.shape == want.shape
        torch.testing.assert_close(got, want)
    assert attempts == [(0, 8), (2, 3)]
    assert opt.eager_calls == 3 and len(opt.variants) == 2
    err = capfd.readouterr().err
    assert err.count("(a size of 0) failed") == 1 and "ERROR" not in err
