"""A compiled module whose structure the user changes recompiles; its compiled code never runs a
model that no longer exists (runtime/structure_watch.py). In-place weight updates do not
recompile: the compiled program reads the module's own parameters (issue 9, item 5)."""

import copy

import torch

import blade


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.b = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def _opt():
    torch.manual_seed(0)
    m = Net().eval()
    return m, blade.optimize(m, (torch.randn(2, 8),))


def _same(opt, m, batch=3):
    x = torch.randn(batch, 8)
    with torch.no_grad():
        torch.testing.assert_close(opt(x), m(x))


def test_replacing_a_submodule_recompiles(capfd):
    m, opt = _opt()
    _same(opt, m)
    m.a = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh())  # PEFT-style injection
    _same(opt, m)
    assert "changed since it was compiled" in capfd.readouterr().err
    assert opt.eager_calls == 0 and len(opt.variants) == 1  # compiled again, not answered eagerly
    m.a[0].weight = torch.nn.Parameter(torch.randn(8, 8))  # a submodule added after the compile
    _same(opt, m)
    assert "a.0.parameters['weight']" in capfd.readouterr().err


def test_hooks_and_new_parameters_recompile():
    m, opt = _opt()
    handle = m.b.register_forward_hook(lambda mod, inp, out: out * 2)
    _same(opt, m)
    handle.remove()
    _same(opt, m)
    m.b.bias = torch.nn.Parameter(torch.ones(4))
    _same(opt, m)
    m.register_buffer("unused", torch.zeros(1))
    _same(opt, m)


def test_in_place_weight_updates_need_no_recompile(capfd):
    m, opt = _opt()
    _same(opt, m)
    with torch.no_grad():
        m.a.weight.add_(0.5)  # what fuse_lora / unfuse_lora do
        m.load_state_dict({k: v * 2 for k, v in m.state_dict().items()})
    _same(opt, m)
    assert "changed since it was compiled" not in capfd.readouterr().err
    assert len(opt.variants) == 1


def test_copies_are_plain_and_unwatched():
    m, opt = _opt()
    clone = copy.deepcopy(m)
    assert type(clone.a._parameters) is dict and type(clone._modules) is dict
    clone.a = torch.nn.Identity()
    before = opt._gate.watch.version
    _same(opt, m)
    assert opt._gate.watch.version == before
    import pickle, io
    buf = io.BytesIO()
    torch.save(m, buf)  # a watched module still saves
    assert buf.tell() > 0


def test_a_submodule_optimized_on_its_own_is_watched_by_both():
    m, opt = _opt()
    sub = blade.optimize(m.a, (torch.randn(2, 8),))
    m.a.weight = torch.nn.Parameter(torch.randn(8, 8))
    _same(opt, m)
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(sub(x), m.a(x))
    assert opt._gate.watch.version >= 1 and sub._gate.watch.version >= 1


def test_hook_handles_made_before_optimize_still_remove_their_hooks():
    torch.manual_seed(0)
    m = Net().eval()
    h1 = m.a.register_forward_hook(lambda mod, inp, out: out * 3)
    h2 = m.b.register_forward_hook(lambda mod, args, kwargs, out: out + 1, with_kwargs=True)
    opt = blade.optimize(m, (torch.randn(2, 8),))
    _same(opt, m)
    h1.remove()
    h2.remove()
    assert not m.a._forward_hooks and not m.b._forward_hooks
    _same(opt, m)  # compiled again without the hooks, as eager now runs


def test_script_modules_are_left_alone():
    from blade.runtime.structure_watch import StructureWatch

    s = torch.jit.script(torch.nn.BatchNorm1d(2).eval())
    StructureWatch(s)
    s.double()  # writes through the C++ module's own containers
    assert s(torch.randn(3, 2, dtype=torch.float64)).dtype == torch.float64


def test_nested_optimized_modules_do_not_invalidate_each_other(capfd):
    m, opt = _opt()
    sub = blade.optimize(m.a, (torch.randn(2, 8),))  # its capture reparametrizes m.a
    for _ in range(3):
        _same(opt, m)
        x = torch.randn(3, 8)
        with torch.no_grad():
            torch.testing.assert_close(sub(x), m.a(x))
    assert "changed since it was compiled" not in capfd.readouterr().err
