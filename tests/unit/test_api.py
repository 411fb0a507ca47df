"""The public API: Config, drop-in module behaviour, guard classes and variants, frontends."""

import contextlib
from collections import OrderedDict

import pytest
import torch

import blade
from blade.module import GuardError
from tests.unit.op_matrix import Attention, ConvBlock


def test_config_context_manager_and_validation():
    assert blade.Config.current().enable_fp16 is False
    with blade.Config(enable_fp16=True, verbose=False) as cfg:
        assert blade.Config.current() is cfg
        with blade.Config(dump_dir="x"):
            assert blade.Config.current().dump_dir == "x"
        assert blade.Config.current() is cfg
    assert blade.Config.current().enable_fp16 is False
    with pytest.raises(ValueError, match="fallback"):
        blade.Config(fallback="maybe")
    cfg = blade.Config()
    cfg.enable_fp16 = True  # torch_blade-style attribute setting
    assert "enable_fp16=True" in cfg.describe()


def test_blade_optimize_alias_and_training_mode():
    assert blade.blade_optimize is blade.optimize
    # ConvBlock has no dropout or batch norm: training mode changes nothing, so it is accepted
    model = ConvBlock()
    opt = blade.optimize(model, (torch.randn(1, 4, 8, 8),))
    assert opt.training and model.training
    x = torch.randn(2, 4, 6, 6)
    torch.testing.assert_close(opt(x), model(x))
    opt.eval()  # opt.training mirrors the original, both ways
    assert not model.training and not opt.training
    with pytest.raises(ValueError, match=r"training mode.*Dropout 'drop'.*\.eval\(\)"):
        blade.optimize(torch.nn.Sequential(OrderedDict(lin=torch.nn.Linear(4, 4), drop=torch.nn.Dropout(0.1))),
                       (torch.randn(2, 4),))


class Branchy(torch.nn.Module):
    """Python control flow on a size: export specialises it into a guard."""

    def forward(self, x):
        if x.shape[1] % 2 == 0:
            return x * 2
        return x - 1


def test_call_outside_the_guard_class_compiles_one_more_variant(capfd):
    model = Branchy().eval()
    opt = blade.optimize(model, (torch.randn(2, 4),))
    torch.testing.assert_close(opt(torch.ones(3, 6)), torch.full((3, 6), 2.0))
    assert len(opt.variants) == 1
    torch.testing.assert_close(opt(torch.ones(3, 5)), torch.zeros(3, 5))
    assert len(opt.variants) == 2
    assert "compiling variant 1" in capfd.readouterr().err
    torch.testing.assert_close(opt(torch.ones(1, 7)), torch.zeros(1, 7))
    assert len(opt.variants) == 2  # odd widths reuse variant 1


def test_max_variants_bounds_recompiles(capfd):
    opt = blade.optimize(Branchy().eval(), (torch.randn(2, 4),), config=blade.Config(max_variants=1))
    torch.testing.assert_close(opt(torch.ones(2, 5)), torch.zeros(2, 5))  # eager's answer, no compile
    assert len(opt.variants) == 1 and "max_variants" in capfd.readouterr().err
    strict = blade.optimize(Branchy().eval(), (torch.randn(2, 4),),
                            config=blade.Config(max_variants=1, fallback="strict"))
    with pytest.raises(GuardError, match="max_variants"):
        strict(torch.ones(2, 5))


def test_an_empty_batch_variant_does_not_count_against_max_variants(capfd):
    """An empty batch compiles a variant of its own (its sizes are outside every symbol's range);
    that variant took a max_variants slot, so a later real guard class ran eagerly (generated
    seed 6172000, session 19)."""
    opt = blade.optimize(Branchy().eval(), (torch.randn(2, 4),), config=blade.Config(max_variants=2))
    empty = torch.ones(0, 4)
    assert opt(empty).shape == (0, 4) and len(opt.variants) == 2 and opt.variants[1].empty_call
    torch.testing.assert_close(opt(torch.ones(2, 5)), torch.zeros(2, 5))
    assert len(opt.variants) == 3 and opt.eager_calls == 0, capfd.readouterr().err


def test_static_dims_and_ranges():
    model = Attention().eval()
    cfg = blade.Config(static_dims={"x": [0]}, dim_ranges={"x": {1: (2, 32)}})
    opt = blade.optimize(model, (torch.randn(2, 9, 16),), config=cfg)
    from blade.ir import read_symbol_table
    table = read_symbol_table(opt.report.module)
    (info,) = table.symbols.values()
    assert (info.lo, info.hi) == (2, 32)
    x = torch.randn(2, 31, 16)
    torch.testing.assert_close(opt(x), model(x))
    opt(torch.randn(2, 40, 16))  # outside the range: compiles another variant
    assert len(opt.variants) == 2


def test_drop_in_attributes_and_output_structure():
    class WithOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = {"name": "demo"}
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x, scale: float = 2.0):
            return {"y": self.lin(x) * scale, "pair": (x, x + 1)}

    model = WithOutput().eval()
    opt = blade.optimize(model, (torch.randn(3, 4),), model_kwargs={"scale": 3.0})
    assert opt.config == {"name": "demo"}
    x = torch.randn(5, 4)
    out = opt(x, scale=3.0)
    torch.testing.assert_close(out["y"], model(x, 3.0)["y"])
    torch.testing.assert_close(out["pair"][1], x + 1)


def test_in_place_weight_updates_are_seen():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4)).eval()
    opt = blade.optimize(model, (torch.randn(2, 4),))
    x = torch.randn(2, 4)
    with torch.no_grad():
        model[0].weight.mul_(3.0)  # e.g. fusing a LoRA into the weights
    torch.testing.assert_close(opt(x), model(x))


def test_fp16_conversion_keeps_caller_dtypes_and_accuracy():
    model = ConvBlock().eval()
    opt = blade.optimize(model, (torch.randn(2, 4, 9, 9),), config=blade.Config(enable_fp16=True))
    x = torch.randn(3, 4, 11, 7)
    out = opt(x)
    assert out.dtype == torch.float32
    ref = model(x)
    half = model.half()(x.half()).float()
    model.float()
    err_blade = (out - ref).abs().max().item()
    err_eager = (half - ref).abs().max().item()
    assert err_blade <= 2 * err_eager + 1e-6


def test_torchscript_tracing_frontend():
    model = ConvBlock().eval()
    opt = blade.optimize(model, (torch.randn(2, 4, 10, 10),), allow_tracing=True)
    assert opt.report.frontend == "torchscript"
    for shape in [(1, 4, 7, 13), (3, 4, 16, 5)]:
        x = torch.randn(*shape)
        torch.testing.assert_close(opt(x), model(x))
    assert len(opt.variants) == 1


def test_ready_script_module():
    model = ConvBlock().eval()
    traced = torch.jit.trace(model, (torch.randn(2, 4, 10, 10),))
    opt = blade.optimize(traced, (torch.randn(2, 4, 10, 10),))
    assert opt.report.frontend == "torchscript"
    x = torch.randn(1, 4, 9, 12)
    torch.testing.assert_close(opt(x), model(x))
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU()).eval())
    opt = blade.optimize(scripted, (torch.randn(2, 4),))
    x = torch.randn(5, 4)
    torch.testing.assert_close(opt(x), scripted(x))


def test_scripted_loops_run_eagerly_with_a_message(capfd):
    model = torch.jit.script(ConvBlock().eval())
    with pytest.raises(RuntimeError, match="prim::Loop.*torch.export frontend"):
        blade.optimize(model, (torch.randn(2, 4, 10, 10),), config=blade.Config(fallback="strict"))
    opt = blade.optimize(model, (torch.randn(2, 4, 10, 10),))
    assert "runs in eager PyTorch" in capfd.readouterr().err
    x = torch.randn(1, 4, 9, 12)
    torch.testing.assert_close(opt(x), model(x))


def test_torch_compile_backend(capfd):
    torch._dynamo.reset()
    model = Attention().eval()
    compiled = torch.compile(model, backend="blade")
    with torch.no_grad():
        for shape in [(2, 5, 16), (3, 7, 16), (2, 11, 16), (4, 3, 16)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(compiled(x), model(x))
    # Dynamo re-traces once (its automatic-dynamic step); Blade compiles each graph once
    assert "compiling variant" not in capfd.readouterr().err
    torch._dynamo.reset()


@contextlib.contextmanager
def backend_compiles():
    """Through the ``with`` block, every ``blade.optimize`` the Dynamo backend calls is kept in the
    yielded list; afterwards each must have compiled (variants, no eager answer, no fallback op)."""
    compiled_modules: list = []
    real_optimize = blade.optimize

    def spy(*args, **kwargs):
        compiled_modules.append(real_optimize(*args, **kwargs))
        return compiled_modules[-1]

    torch._dynamo.reset()
    blade.optimize = spy
    try:
        yield compiled_modules
    finally:
        blade.optimize = real_optimize
        torch._dynamo.reset()
    assert compiled_modules and all(m.variants and not m.eager_calls for m in compiled_modules)
    assert all(not v.program.report.unsupported for m in compiled_modules for v in m.variants)


@pytest.mark.parametrize("dynamic", [True, None])
def test_torch_compile_backend_with_layer_norm(dynamic, capfd):
    """Dynamo lifts a LayerNorm's float ``eps`` into a 0-d tensor input read with ``.item()``;
    export could not trace that and the whole graph ran in eager PyTorch. The backend compiles it
    with the value as a constant and compiles again when the attribute changes."""
    from blade.frontend import dynamo_backend

    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.GELU(),
                                torch.nn.Linear(16, 4)).eval()
    with backend_compiles(), torch.no_grad():
        compiled = torch.compile(model, backend="blade", dynamic=dynamic)
        for n in [4, 7, 1, 9]:
            x = torch.randn(n, 8)
            torch.testing.assert_close(compiled(x), model(x))
        model[1].eps = 0.5
        x = torch.randn(5, 8)
        torch.testing.assert_close(compiled(x), model(x))
    err = capfd.readouterr().err
    assert "runs in eager PyTorch" not in err, err[-2000:]
    assert dynamo_backend._lifted_floats  # the path under test


@pytest.mark.parametrize("region", ["autocast_bf16", "autocast_off", "no_grad"])
def test_torch_compile_backend_with_a_context_region(region, capfd):
    """Dynamo hands over a graph holding the context manager's enter and exit; export makes the
    region a higher-order op, whose inlining retrace used to stop at export's dtype assertion
    before a ``.float()`` (the whole graph then ran in eager PyTorch)."""
    from tests.unit.test_autocast import REGIONS

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(8, 16)

        def forward(self, x):
            with REGIONS[region]():
                g = self.a(x)
            return g.float().mean(-1) + torch.tanh(x).sum(-1)

    model = M().eval()
    with backend_compiles(), torch.no_grad():
        compiled = torch.compile(model, backend="blade")
        for shape in [(2, 5, 8), (3, 7, 8), (1, 1, 8)]:
            x = torch.randn(*shape)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-2, atol=1e-2)
    err = capfd.readouterr().err
    assert "runs in eager PyTorch" not in err, err[-2000:]


def test_long_compiles_say_where_they_are(capfd, monkeypatch):
    """Stages at least ``SLOW_STAGE_S`` long are printed as they end, and a long first compile
    says that it ended (here with the threshold at 0: every stage counts as long)."""
    import blade.module
    import blade.report

    monkeypatch.setattr(blade.report, "SLOW_STAGE_S", 0.0)
    monkeypatch.setattr(blade.module, "SLOW_STAGE_S", 0.0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU()).eval()
    blade.optimize(model, (torch.randn(2, 4),))
    err = capfd.readouterr().err
    assert "[blade] Sequential#0: capture (torch.export) done in" in err
    assert "[blade] Sequential#0: fuse-stitch done in" in err
    assert "[blade] Sequential: compiled in" in err
    monkeypatch.setattr(blade.report, "SLOW_STAGE_S", 1e9)
    monkeypatch.setattr(blade.module, "SLOW_STAGE_S", 1e9)
    blade.optimize(model, (torch.randn(2, 4),))
    assert "done in" not in capfd.readouterr().err  # short compiles stay quiet


def test_aliased_example_inputs_are_not_traced_as_one():
    class Diff(torch.nn.Module):
        def forward(self, x, y):
            return x - y

    t = torch.randn(2, 3)
    opt = blade.optimize(Diff().eval(), (t, t))
    x, y = torch.randn(4, 3), torch.randn(4, 3)
    torch.testing.assert_close(opt(x, y), x - y)


def test_programs_that_draw_random_numbers_are_known():
    """They run without CUDA graphs (compiler/module.py ``Variant.uses_rng``)."""
    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x + torch.randn_like(x)

    class Plain(torch.nn.Module):
        def forward(self, x):
            return x * 2

    class Attention(torch.nn.Module):  # attention ops carry the random tag for their dropout
        def __init__(self, p: float):
            super().__init__()
            self.p = p

        def forward(self, x):
            q = x.view(x.shape[0], 1, x.shape[1], -1)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, dropout_p=self.p).flatten(1, 2)

    class Dropout(torch.nn.Module):
        def __init__(self, p: float):
            super().__init__()
            self.drop = torch.nn.Dropout(p)

        def forward(self, x):
            return self.drop(x) * 2

    x = torch.randn(2, 3)
    assert blade.optimize(Noisy(), (x,)).variants[0].uses_rng
    assert not blade.optimize(Plain(), (x,)).variants[0].uses_rng
    seq = torch.randn(2, 5, 8)
    assert not blade.optimize(Attention(0.0), (seq,)).variants[0].uses_rng  # every inference model
    assert blade.optimize(Attention(0.5), (seq,)).variants[0].uses_rng
    assert not blade.optimize(Dropout(0.5).eval(), (x,)).variants[0].uses_rng
    assert not blade.optimize(Dropout(0.0).train(), (x,)).variants[0].uses_rng
