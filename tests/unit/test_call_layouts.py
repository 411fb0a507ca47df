"""``CallLayouts``: a call shaped like an earlier one gets exactly the tensors (same objects, same
order) and the signature that binding and flattening give, without binding. Random call layouts
(positional and keyword arguments, defaults left out or passed, containers, constants, one tensor
passed twice) against the full way, each layout called several times with new tensors of other
dtypes; values the cache cannot describe take the full way; a wrong call raises Python's
``TypeError`` every time."""

import inspect
import random

import pytest
import torch

from blade.runtime.call_signature import CallLayouts, bind_call, flatten_call


def fwd_plain(self, x, t, ctx=None, scale: float = 1.0, *, flag: bool = True, extra=None):
    pass


def fwd_star(self, x, *rest, mode: str = "a", **options):
    pass


def fwd_posonly(self, x, y=None, /, z=None):
    pass


SIGNATURES = [inspect.signature(f).replace(parameters=list(inspect.signature(f).parameters.values())[1:])
              for f in (fwd_plain, fwd_star, fwd_posonly)]
DTYPES = [torch.float32, torch.float16, torch.int64, torch.bfloat16]


def _value(rng: random.Random, pool: list, depth: int = 0):
    """A random argument: a tensor (sometimes one already used), a constant or a container."""
    r = rng.random()
    if r < 0.5 or depth > 1:
        if pool and rng.random() < 0.15:
            return rng.choice(pool)  # one tensor passed twice
        pool.append(torch.empty(rng.randint(0, 3), dtype=rng.choice(DTYPES)))
        return pool[-1]
    if r < 0.75:
        return rng.choice([None, True, False, 0, 3, 2.5, -0.0, "s", torch.float16, torch.device("cpu")])
    kind = rng.choice([tuple, list, dict])
    items = [_value(rng, pool, depth + 1) for _ in range(rng.randint(0, 3))]
    return {f"k{i}": v for i, v in enumerate(items)} if kind is dict else kind(items)


def _call(rng: random.Random, sig: inspect.Signature):
    pool: list = []
    params = list(sig.parameters.values())
    args, kwargs = [], {}
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            args += [_value(rng, pool) for _ in range(rng.randint(0, 2))]
        elif p.kind is p.VAR_KEYWORD:
            kwargs.update({f"o{i}": _value(rng, pool) for i in range(rng.randint(0, 2))})
        elif p.default is not p.empty and rng.random() < 0.4:
            continue  # left at its default
        elif p.kind is p.POSITIONAL_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and not kwargs and (
                rng.random() < 0.6 or any(q.kind is q.VAR_POSITIONAL for q in params))):
            args.append(_value(rng, pool))
        elif p.kind is not p.POSITIONAL_ONLY:
            kwargs[p.name] = _value(rng, pool)
    if rng.random() < 0.5:
        kwargs = dict(reversed(list(kwargs.items())))  # another keyword order: another layout
    return tuple(args), kwargs


def _retensored(value, rng: random.Random, constants: bool = False):
    """The same structure with new tensors (other sizes and dtypes); ``constants``: other
    constants of the same types too (another layout that looks alike)."""
    if isinstance(value, torch.Tensor):
        return torch.empty(rng.randint(0, 3), dtype=rng.choice(DTYPES))
    if type(value) in (tuple, list):
        return type(value)(_retensored(v, rng, constants) for v in value)
    if type(value) is dict:
        return {k: _retensored(v, rng, constants) for k, v in value.items()}
    if constants and type(value) in (bool, int, float, str):
        return {bool: lambda b: not b, int: lambda i: i + 1, float: lambda f: f * 2 + 1, str: lambda t: t + "x"}[
            type(value)](value)
    return value


def _full(sig, args, kwargs, training, fill=True):
    cargs, ckwargs = bind_call(sig, args, kwargs, fill)
    tensors, _, signature = flatten_call(cargs, ckwargs, training)
    return tensors, signature


@pytest.mark.parametrize("seed", range(40))
def test_remembered_layouts_normalise_as_binding_does(seed):
    rng = random.Random(seed)
    sig = SIGNATURES[seed % len(SIGNATURES)]
    fill = seed % 4 != 3
    layouts = CallLayouts(sig, fill)
    calls = [_call(rng, sig) for _ in range(6)]
    for args, kwargs in calls * 2:
        for _ in range(3):
            r = rng.random()
            if r < 0.6:  # same layout, new tensors; or other constant values; or the same call twice
                args, kwargs = _retensored(args, rng, r < 0.2), _retensored(kwargs, rng, r < 0.2)
            training = rng.random() < 0.3
            try:
                want = _full(sig, args, kwargs, training, fill)
            except TypeError:
                with pytest.raises(TypeError):
                    layouts.normalise(args, kwargs, training)
                continue
            got = layouts.normalise(args, kwargs, training)
            assert len(got[0]) == len(want[0]) and all(a is b for a, b in zip(got[0], want[0]))
            assert got[1] == want[1]
    assert layouts.remembered > 0


def test_constants_are_part_of_the_layout():
    layouts = CallLayouts(SIGNATURES[0])
    x = torch.ones(2)
    for scale in (1.0, 2.0, 1, True, 2.0):  # 1.0, 1 and True are equal in Python, not to export
        got = layouts.normalise((x, x), {"scale": scale}, False)
        assert got[1] == _full(SIGNATURES[0], (x, x), {"scale": scale}, False)[1]
    assert layouts.remembered == 1


def test_values_it_cannot_describe_take_the_full_way():
    sig = SIGNATURES[0]
    layouts = CallLayouts(sig)
    x = torch.ones(2)
    for extra in ({"scale": float("nan")}, {"extra": object()}, {"extra": {1, 2}}):  # NaN equals nothing; a set
        for _ in range(2):
            tensors, signature = layouts.normalise((x, x), extra, False)
            want = _full(sig, (x, x), extra, False)
            assert all(a is b for a, b in zip(tensors, want[0])) and len(tensors) == len(want[0])
            assert signature.spec == want[1].spec and signature.tensors == want[1].tensors
    assert layouts.remembered == 0 and not layouts._known
    layouts.normalise((x, x), {}, False)
    layouts.normalise((x, x), {}, False)
    assert layouts.remembered == 1


def test_wrong_calls_raise_every_time_and_are_not_remembered():
    sig = SIGNATURES[0]
    layouts = CallLayouts(sig)
    x = torch.ones(2)
    for _ in range(2):
        with pytest.raises(TypeError):
            layouts.normalise((x,), {}, False)  # t missing
        with pytest.raises(TypeError):
            layouts.normalise((x, x), {"nope": x}, False)
    assert layouts.remembered == 0


def test_bounded():
    sig = SIGNATURES[1]
    layouts = CallLayouts(sig, limit=4)
    x = torch.ones(1)
    for n in range(10):
        layouts.normalise((x,) * (n + 1), {}, False)  # a new layout each
    assert len(layouts._known) <= 4
