"""Python float arguments (``controlnet(..., conditioning_scale=0.8)``, a float timestep, a guidance
or LoRA scale).

torch.export fixes floats, so each new value used to compile a variant (then, past
``Config.max_variants``, a capture per call, then eager PyTorch). With
``Config.float_arguments="auto"`` a call that differs from a variant only in float (and int)
values compiles once more, traced with a 0-dim tensor in each float's place, and that variant
serves every value. Where the model cannot take a tensor there (``if scale > 0.5``,
``math.sqrt(scale)``, ``F.interpolate(scale_factor=...)``) or would return a tensor where it
returned a float, the floats stay constants.

The forms are generated as in ``test_int_arguments.py``: each module uses its float another way,
is called with values including 0.0, negative, tiny, huge and non-finite ones at batch sizes 1-3,
in float32, float16 and float64 and with integer tensors, and every answer is compared with eager's
(shape, dtype, values).
"""

import math

import pytest
import torch
import torch.nn.functional as F

import blade


class AsData(torch.nn.Module):
    def forward(self, x, s):
        return x * s + s ** 2 - 1.0 / (abs(s) + 1.0)


class Lerp(torch.nn.Module):
    def forward(self, x, s):
        return torch.lerp(x, x.flip(0), s), torch.where(x > 0, x, s)


class TimestepLikeDiffusers(torch.nn.Module):
    """diffusers' timestep handling for a float: a one-element float32 tensor, broadcast over the
    batch, embedded sinusoidally (a tensor argument takes the other branch: the same values)."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x, timestep):
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.float32, device=x.device)
        elif timestep.dim() == 0:
            timestep = timestep[None].to(x.device)
        timestep = timestep.expand(x.shape[0])
        freqs = torch.exp(-math.log(10000) * torch.arange(4, dtype=torch.float32, device=x.device) / 4)
        emb = timestep[:, None].float() * freqs[None]
        return x + self.proj(torch.cat([emb.sin(), emb.cos()], dim=-1))


class ControlNetLike(torch.nn.Module):
    """ControlNet's ``conditioning_scale``: every residual scaled by it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)

    def forward(self, x, conditioning_scale: float = 1.0, guess_mode: bool = False):
        res = [self.a(x), self.b(x)]
        if guess_mode:
            res = [r * w for r, w in zip(res, (0.5, 1.0))]
        return [r * conditioning_scale for r in res]


class IntTensors(torch.nn.Module):
    """A float meets an int64 tensor: the result is float32 (the default dtype), as eager's."""

    def forward(self, x, s):
        n = torch.arange(x.shape[1])
        return n * s, x + (n * s).sum()


class Clamped(torch.nn.Module):
    def forward(self, x, s):
        return x.clamp(min=-abs(s), max=abs(s)) + s


class Guarded(torch.nn.Module):  # a branch on the value: floats stay constants
    def forward(self, x, s):
        if s > 0.5:
            return x * 2 + s
        return x - s


class MathOfIt(torch.nn.Module):  # Python math on the value: floats stay constants
    def forward(self, x, s):
        return x * math.sqrt(abs(s) + 1.0)


class Resized(torch.nn.Module):  # a float as a size factor: floats stay constants
    def forward(self, x, s):
        return F.interpolate(x[:, None, :], scale_factor=s, mode="nearest")[:, 0]


class Returned(torch.nn.Module):  # returns a float computed from the argument: floats stay constants
    def forward(self, x, s):
        return x + 1, s * 2


class NestedWithInt(torch.nn.Module):
    def forward(self, x, opts):
        return F.pad(x, (0, opts["pad"])) * opts["scale"], x[:, : opts["pad"]] + opts["shift"]


VALUES = [0.7, 0.0, -3.25, 1e-8, 12345.5, 1.0, float("inf"), -0.5]
#: module, example non-tensor arguments, later calls' non-tensor arguments, compiles as values
FORMS = {
    "as_data": (AsData, (0.5,), [(v,) for v in VALUES], True),
    "lerp_where": (Lerp, (0.25,), [(v,) for v in VALUES[:6]], True),
    "diffusers_timestep": (TimestepLikeDiffusers, (981.0,), [(961.5,), (0.0,), (500.25,), (1.0,)], True),
    "controlnet_scale": (ControlNetLike, (1.0,), [(0.8,), (0.0,), (1.5,), (0.35,)], True),
    "int_tensors": (IntTensors, (0.5,), [(v,) for v in VALUES[:6]], True),
    "clamped": (Clamped, (0.5,), [(v,) for v in VALUES[:6]], True),
    "guarded": (Guarded, (0.25,), [(0.75,), (0.3,), (0.5,), (2.0,)], False),
    "math": (MathOfIt, (0.25,), [(0.75,), (4.0,)], False),
    "resized": (Resized, (2.0,), [(3.0,), (0.5,)], False),
    "returned": (Returned, (0.5,), [(1.5,), (-2.0,)], False),
    "nested_with_int": (NestedWithInt, ({"pad": 2, "scale": 0.5, "shift": 1.0},),
                        [({"pad": 3, "scale": 0.5, "shift": 1.0},), ({"pad": 0, "scale": 0.25, "shift": -1.0},),
                         ({"pad": 3, "scale": 2.0, "shift": 0.0},), ({"pad": 5, "scale": 1e-3, "shift": 7.5},)], True),
}


def _assert_same(got, want, tol):
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == want.dtype, (got, want)
        torch.testing.assert_close(got, want, atol=tol, rtol=tol, equal_nan=True)
    elif isinstance(want, (tuple, list)):
        assert type(got) is type(want) and len(got) == len(want)
        for g, w in zip(got, want):
            _assert_same(g, w, tol)
    else:
        assert type(got) is type(want) and got == want, (got, want)


TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2, torch.float64: 1e-12}


def check_form(form: str, executor: str, dtype=torch.float32):
    """Compile ``FORMS[form]`` at its example, call it with every later value at batch 1-3 and
    compare each answer with eager's; no call may be answered by eager PyTorch, and where the form
    takes floats as values one variant serves every later value."""
    cls, example, calls, as_values = FORMS[form]
    torch.manual_seed(0)
    model = cls().eval().to(dtype)
    config = blade.Config(executor=executor, max_variants=8)  # forms whose floats stay constants: one per value
    opt = blade.optimize(model, (torch.randn(2, 8, dtype=dtype), *example), config=config)
    for i, extra in enumerate(calls):
        x = torch.randn(1 + i % 3, 8, dtype=dtype)
        with torch.no_grad():
            _assert_same(opt(x, *extra), model(x, *extra), TOLERANCE[dtype])
        assert opt.eager_calls == 0, f"{form}: call {extra} was answered by eager PyTorch"
    valued = [v for v in opt.variants if v.signature.valued]
    if as_values:
        assert valued, f"{form}: no variant takes the floats as values"
        # the example's variant, the one taking values, plus what batch 1 pins (a size-1 dim)
        assert len(opt.variants) <= 4, [v.signature for v in opt.variants]
    else:
        assert not valued, f"{form}: a variant took floats as values where it must not"
    return opt


@pytest.mark.parametrize("form", list(FORMS))
def test_float_arguments_answer_as_eager_for_every_value(form):
    check_form(form, "reference")  # the Program executor: tests/kernels/test_float_arguments_program.py


@pytest.mark.parametrize("dtype", [torch.float16, torch.float64])
@pytest.mark.parametrize("form", ["as_data", "controlnet_scale", "lerp_where"])
def test_float_arguments_with_half_and_double_tensors(form, dtype):
    """float16 tensors keep their dtype (a float does not promote them); float64 tensors meet the
    float as a float64 value, exactly as eager (a float32 value would round it)."""
    opt = check_form(form, "reference", dtype)
    want = torch.float64 if dtype == torch.float64 else torch.get_default_dtype()
    assert all(v.value_dtype == want for v in opt.variants if v.signature.valued)


def test_a_loop_over_float_timesteps_compiles_twice(capfd):
    torch.manual_seed(0)
    model = TimestepLikeDiffusers().eval()
    opt = blade.optimize(model, (torch.randn(2, 8), 999.0))
    x = torch.randn(2, 8)
    for t in torch.linspace(999, 0, 30).tolist():
        with torch.no_grad():
            _assert_same(opt(x, t), model(x, t), 1e-4)
    assert len(opt.variants) == 2 and opt.eager_calls == 0
    assert opt.variants[1].signature.valued == (0,)
    assert "its float arguments are compiled as inputs" in capfd.readouterr().err


def test_static_and_dynamic_float_argument_policies():
    x = torch.randn(2, 8)
    model = AsData().eval()
    static = blade.optimize(model, (x, 0.5), config=blade.Config(float_arguments="static"))
    for s in (0.25, 0.75):
        torch.testing.assert_close(static(x, s), model(x, s))
    assert [v.signature.valued for v in static.variants] == [(), (), ()]

    dynamic = blade.optimize(model, (x, 0.5), config=blade.Config(float_arguments="dynamic"))
    for s in (0.25, 0.75, -1.0):
        torch.testing.assert_close(dynamic(x, s), model(x, s))
    assert [v.signature.valued for v in dynamic.variants] == [(0,)]

    with pytest.raises(ValueError, match="float_arguments"):
        blade.Config(float_arguments="sometimes")


def test_floats_that_stay_constants_are_tried_as_values_once(capfd):
    opt = check_form("guarded", "reference")
    assert capfd.readouterr().err.count("compiling its float arguments as inputs failed") == 1
    assert len(opt.variants) == 5  # one per value


def test_ints_and_bools_are_not_floats():
    """``1`` and ``1.0`` and ``True`` compare equal in Python: each keeps its own variant (an int
    is a size, a bool a constant), and a float variant never serves an int call."""
    torch.manual_seed(0)
    model = AsData().eval()
    x = torch.randn(2, 8)
    opt = blade.optimize(model, (x, 0.5))
    for s in (0.25, 1, 1.0, True, 2, 3.5):
        _assert_same(opt(x, s), model(x, s), 1e-5)
    for v in opt.variants:
        kinds = {kind for kind, _ in v.signature.constants}
        assert len(kinds) == 1
        if v.signature.valued:
            assert kinds == {float}
