"""Methods of the original model called on its optimized module (``compiler/methods.py``):
``opt.generate(ids)`` used to run the original's loop with the original's forward (eager, the
compiled module unused); ``pipe.vae.decode(z)`` after ``pipe.vae = blade.optimize(pipe.vae)`` used
to run eagerly. Now a method that calls forward runs with every forward call optimized, a method
that computes tensors on its own is compiled from its second call, anything else runs as before;
answers equal eager's in every case.
"""

import inspect
import threading

import pytest
import torch

import blade
from blade.methods import MethodEntry


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)
        self.scale = 1.0

    def forward(self, x):
        return torch.tanh(self.lin(x)) * self.scale

    def twice(self, x, times: int = 2):  # calls forward: routed
        for _ in range(times):
            x = self(x)
        return x

    def head(self, x, shift=0.5):  # computes tensors without forward: compiled
        return torch.sigmoid(self.lin(x) + shift)

    def with_callback(self, x, callback):  # calls forward, and the callback in between
        y = self(x)
        callback()
        return self(y)

    def set_scale(self, s):  # takes no tensor: eager
        self.scale = s
        return s

    def grow(self, x):  # changes the structure: eager
        self.extra = torch.nn.Linear(6, 6)
        return self.extra(x)

    def mean(self, x):  # returns no tensor: eager
        return float(x.mean())


def _opt():
    torch.manual_seed(0)
    model = Net().eval()
    return model, blade.optimize(model, (torch.randn(2, 6),))


def test_a_method_that_calls_forward_runs_every_forward_call_optimized():
    model, opt = _opt()
    compiled = len(opt.variants)
    assert compiled >= 1
    with torch.no_grad():
        for batch in (1, 3, 2, 5):
            x = torch.randn(batch, 6)
            torch.testing.assert_close(opt.twice(x), model.twice(x), atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(opt.twice(x, times=3), model.twice(x, times=3), atol=1e-6, rtol=1e-6)
    entry = opt.twice
    assert isinstance(entry, MethodEntry) and entry.mode == "routed"
    assert opt.eager_calls == 0
    # the batch-1 call may add a variant (batch 1 is a size export specialises); nothing ran eagerly
    assert len(opt.variants) <= compiled + 1
    assert "forward" not in model.__dict__, "the routing outlived the call"
    assert inspect.signature(opt.twice) == inspect.signature(model.twice)


def test_routing_counts_the_forward_calls():
    model, opt = _opt()
    calls = []
    original_forward = type(opt).forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original_forward(self, *args, **kwargs)

    type(opt).forward = counting
    try:
        with torch.no_grad():
            opt.twice(torch.randn(2, 6), times=4)
    finally:
        type(opt).forward = original_forward
    assert len(calls) == 4, "the method's forward calls did not reach the optimized module"


def test_a_method_that_computes_tensors_on_its_own_is_compiled():
    model, opt = _opt()
    with torch.no_grad():
        for i, batch in enumerate((2, 3, 1, 7, 2)):
            x = torch.randn(batch, 6)
            torch.testing.assert_close(opt.head(x), model.head(x), atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(opt.head(x, shift=-1.0), model.head(x, shift=-1.0), atol=1e-6, rtol=1e-6)
            if i == 0:
                assert opt.head.mode == "compiled" and opt.head.compiled is not None
    compiled = opt.head.compiled
    assert compiled.name == "Net.head" and compiled.variants and compiled.eager_calls == 0
    # in-place weight updates reach the compiled method as they reach forward
    with torch.no_grad():
        model.lin.weight.mul_(-1)
        x = torch.randn(4, 6)
        torch.testing.assert_close(opt.head(x), model.head(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("method", ["set_scale", "grow", "mean"])
def test_methods_that_are_not_computations_run_eagerly(method):
    model, opt = _opt()
    for _ in range(2):
        x = torch.randn(2, 6)
        arg = 2.0 if method == "set_scale" else x
        got = getattr(opt, method)(arg)
        if method == "mean":
            assert got == model.mean(x)
    assert getattr(opt, method).mode == "eager"
    if method == "set_scale":
        assert model.scale == 2.0


def test_attributes_that_are_not_public_methods_are_the_originals():
    model, opt = _opt()
    assert opt.scale == 1.0
    assert opt.lin is model.lin
    assert opt._get_name() == "BladeModule"  # nn.Module's own method, on the wrapper
    assert not isinstance(opt.__class__, MethodEntry)


def test_a_forward_the_user_set_on_the_instance_is_restored():
    model, opt = _opt()
    own = model.forward

    def patched(x):
        return own(x)

    model.__dict__["forward"] = patched
    with torch.no_grad():
        x = torch.randn(2, 6)
        torch.testing.assert_close(opt.twice(x), model.twice(x))
    assert model.__dict__["forward"] is patched


def test_other_threads_calling_the_original_meanwhile_get_its_own_forward():
    model, opt = _opt()
    calls = []
    original_forward = type(opt).forward

    def counting(self, *args, **kwargs):
        calls.append(threading.current_thread().name)
        return original_forward(self, *args, **kwargs)

    seen = []

    def in_between():  # runs inside the routed method, between its two forward calls
        t = threading.Thread(target=lambda: seen.append(model(torch.randn(2, 6))), name="direct")
        t.start()
        t.join()

    type(opt).forward = counting
    try:
        with torch.no_grad():
            x = torch.randn(2, 6)
            got = opt.with_callback(x, in_between)
    finally:
        type(opt).forward = original_forward
    torch.testing.assert_close(got, model(model(x)))
    assert len(seen) == 1
    assert calls == [threading.current_thread().name] * 2, calls


transformers = pytest.importorskip("transformers")


GENERATORS = {
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", dict(n_layer=2, n_embd=32, n_head=4)),
    "llama": ("LlamaForCausalLM", "LlamaConfig", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                      num_key_value_heads=2, intermediate_size=64)),
    "t5": ("T5ForConditionalGeneration", "T5Config", dict(d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                                         decoder_start_token_id=0)),
}


@pytest.mark.parametrize("family", list(GENERATORS))
def test_generate_on_an_optimized_model_matches_eager_and_compiles_its_forward_calls(family):
    """Decoder-only and encoder-decoder generation: prefill, decode steps with a growing cache,
    batches 1-3 with padding; the tokens equal eager's and no forward call runs eagerly."""
    from blade.models import _skip_library_init, randomize

    cls, config, fields = GENERATORS[family]
    torch.manual_seed(0)
    with _skip_library_init():
        cfg = getattr(transformers, config)(vocab_size=64, bos_token_id=1, eos_token_id=2, pad_token_id=0, **fields)
        model = randomize(getattr(transformers, cls)(cfg)).eval()
    opt = blade.optimize(model)  # compiles at the first forward call generate makes
    for batch, prompt in [(2, 7), (3, 5), (1, 9), (3, 11)]:
        ids = torch.randint(3, 64, (batch, prompt))
        mask = torch.ones(batch, prompt, dtype=torch.long)
        mask[batch - 1, :2] = 0  # left padding
        want = model.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        got = opt.generate(ids, attention_mask=mask, max_new_tokens=5, do_sample=False)
        assert torch.equal(got, want), (batch, prompt)
    assert opt.generate.mode == "routed"
    assert opt.eager_calls == 0 and opt.variants
    # prefill and decode (one variant for every cache length), plus what batch 1 pins
    assert len(opt.variants) <= 5, [v.signature for v in opt.variants]


def test_vae_decode_on_an_optimized_autoencoder_is_compiled():
    pytest.importorskip("diffusers")
    from blade.models import _vae

    torch.manual_seed(0)
    vae = _vae(reduced=True).eval()
    opt = blade.optimize(vae, (torch.randn(1, 3, 32, 32),))
    with torch.no_grad():
        for batch, h, w in [(1, 4, 4), (3, 5, 7), (2, 6, 4)]:
            z = torch.randn(batch, 4, h, w)
            want = vae.decode(z).sample
            got = opt.decode(z).sample
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            got_tuple = opt.decode(z, return_dict=False)
            torch.testing.assert_close(got_tuple[0], want, atol=1e-4, rtol=1e-4)
    assert opt.decode.mode == "compiled"
    assert opt.decode.compiled.variants and opt.decode.compiled.eager_calls == 0
