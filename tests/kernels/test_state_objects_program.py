"""Decode steps with a key/value cache on the Program executor (generated kernels on Triton's
interpreter) and through a saved and loaded module: the loaded module updates the caller's cache
object as eager does (the manifest's ``state_in_place``)."""

import tempfile

import torch

import blade
from tests.unit.test_state_objects import DynamicCache, _decoder, _main_output


def test_decode_steps_with_a_cache_saved_and_loaded():
    torch.manual_seed(0)
    model = _decoder("gpt2")
    opt = blade.optimize(model, (torch.randint(0, 100, (2, 7)),), config=blade.Config(executor="program"),
                         model_kwargs={"past_key_values": DynamicCache(), "use_cache": True})
    ids = torch.randint(0, 100, (2, 7))
    with torch.no_grad():
        cache = DynamicCache()
        opt(ids, past_key_values=cache, use_cache=True)
        opt(ids[:, :1], past_key_values=cache, use_cache=True)  # the decode step's variant
    with tempfile.TemporaryDirectory() as d:
        blade.save(opt, d)
        loaded = blade.load(d, model)
        mine, theirs = DynamicCache(), DynamicCache()
        with torch.no_grad():
            got, want = loaded(ids, past_key_values=mine, use_cache=True), model(ids, past_key_values=theirs, use_cache=True)
            for _ in range(3):
                torch.testing.assert_close(_main_output(got), _main_output(want), atol=1e-5, rtol=1e-5)
                assert got.past_key_values is mine
                tok = torch.randint(0, 100, (2, 1))
                got = loaded(tok, past_key_values=mine, use_cache=True)
                want = model(tok, past_key_values=theirs, use_cache=True)
        assert mine.layers[0].keys.shape == theirs.layers[0].keys.shape
