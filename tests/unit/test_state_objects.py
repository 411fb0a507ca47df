"""Decoder steps with a key/value cache (``runtime/state_objects.py``): a transformers
``DynamicCache`` passed in compiles (it used to fail the capture, and every decode step ran in
eager PyTorch), one variant serves every cache length, and the caller's cache object is updated
in place and returned, as eager does, whether the loop passes the returned cache or keeps its own.
A model that returns a new state object and leaves its input alone is left alone.
"""

import pytest
import torch
import torch.utils._pytree as pytree

import blade

transformers = pytest.importorskip("transformers")
from transformers import DynamicCache  # noqa: E402


def _decoder(name: str) -> torch.nn.Module:
    from blade import models
    from blade.models import _skip_library_init, randomize

    if name == "gpt2":
        return models.gpt2(reduced=True).eval()
    with _skip_library_init():
        cfg = transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2)
        return randomize(transformers.LlamaForCausalLM(cfg)).eval()


def _main_output(out) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.mark.parametrize("name", ["gpt2", "llama"])
@pytest.mark.parametrize("loop", ["returned_cache", "own_cache"])
def test_decode_steps_with_a_cache_compile_and_update_it_as_eager(name, loop):
    torch.manual_seed(0)
    model = _decoder(name)
    example = DynamicCache()
    opt = blade.optimize(model, (torch.randint(0, 100, (2, 7)),),
                         model_kwargs={"past_key_values": example, "use_cache": True})
    assert len(example.layers) == 0, "the capture filled the caller's example cache"
    for batch, prompt in [(2, 5), (1, 9)]:
        ids = torch.randint(0, 100, (batch, prompt))
        mine, theirs = DynamicCache(), DynamicCache()
        with torch.no_grad():
            got, want = opt(ids, past_key_values=mine, use_cache=True), model(ids, past_key_values=theirs, use_cache=True)
            for step in range(4):
                torch.testing.assert_close(_main_output(got), _main_output(want), atol=1e-5, rtol=1e-5)
                assert got.past_key_values is mine and want.past_key_values is theirs
                if loop == "returned_cache":
                    mine, theirs = got.past_key_values, want.past_key_values
                tok = torch.randint(0, 100, (batch, 1))
                got = opt(tok, past_key_values=mine, use_cache=True)
                want = model(tok, past_key_values=theirs, use_cache=True)
        for a, b in zip(pytree.tree_leaves(mine), pytree.tree_leaves(theirs)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        assert mine.layers[0].keys.shape[-2] == prompt + 4
    assert opt.eager_calls == 0
    assert len(opt.variants) <= 4, [v.signature for v in opt.variants]


class Running(torch.nn.Module):
    """A state object the model does not update: it returns a new one."""

    def forward(self, x, state):
        return x * 2, type(state)(state.total + x.sum(0))


class Total:
    def __init__(self, total):
        self.total = total


pytree.register_pytree_node(Total, lambda s: ([s.total], None), lambda children, _: Total(children[0]),
                            serialized_type_name=f"{__name__}.Total",
                            flatten_with_keys_fn=lambda s: ([(pytree.GetAttrKey("total"), s.total)], None))


def test_a_model_returning_a_new_state_object_leaves_the_callers_alone():
    model = Running()
    opt = blade.optimize(model, (torch.randn(2, 3), Total(torch.zeros(3))))
    state = Total(torch.ones(3))
    x = torch.randn(4, 3)
    y, new = opt(x, state)
    torch.testing.assert_close(y, x * 2)
    torch.testing.assert_close(new.total, 1 + x.sum(0))
    assert new is not state and torch.equal(state.total, torch.ones(3))
    assert opt.eager_calls == 0


class Accumulate(torch.nn.Module):
    """A state object the model updates in place and returns, as a cache is."""

    def forward(self, x, state):
        state.total = state.total + x.sum(0)
        return x * 2, state


def test_a_model_updating_its_state_object_in_place_updates_the_callers():
    model = Accumulate()
    opt = blade.optimize(model, (torch.randn(2, 3), Total(torch.zeros(3))))
    mine, theirs = Total(torch.ones(3)), Total(torch.ones(3))
    for batch in (4, 1, 3):
        x = torch.randn(batch, 3)
        (y, got), (z, want) = opt(x, mine), model(x, theirs)
        torch.testing.assert_close(y, z)
        assert got is mine and want is theirs
        torch.testing.assert_close(mine.total, theirs.total)
    assert opt.eager_calls == 0
