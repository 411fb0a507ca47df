"""Outputs of a saved and loaded module (``blade.load``: ``runtime/program_module.py``) that are
not plain tensors of the program: a Python number the model computed with ``item()`` (the
manifest's "scalar" outputs: a loaded module returned the output's index in place of its value,
a silent wrong answer) beside constants and tensors."""

import tempfile

import torch

import blade


class ItemOutputs(torch.nn.Module):
    def forward(self, x):
        return {"y": x * 2, "peak": x.max().item(), "count": 3, "mean": x.mean().item()}


def test_a_loaded_module_returns_item_outputs_as_their_values():
    model = ItemOutputs().eval()
    opt = blade.optimize(model, (torch.randn(3, 5),), config=blade.Config(executor="program"))
    assert [kind for kind, _ in opt.variants[0].program.import_result.outputs].count("scalar") == 2
    with tempfile.TemporaryDirectory() as d:
        blade.save(opt, d)
        loaded = blade.load(d, model)
        for shape in [(3, 5), (1, 7), (4, 2)]:
            x = torch.randn(*shape)
            got, want, mine = loaded(x), model(x), opt(x)
            for out in (got, mine):
                assert set(out) == set(want) and out["count"] == 3
                torch.testing.assert_close(out["y"], want["y"])
                for key in ("peak", "mean"):
                    assert type(out[key]) is float and abs(out[key] - want[key]) < 1e-5, (key, out[key], want[key])
