"""A CUDA graph reads the addresses its capture saw: a weight whose storage is replaced after the
capture (``param.data = ...``, ``model.half()``, PEFT's safe LoRA merge) must not be replayed.
The capture records every weight's address (``_program_weights``); ``_replay`` refuses a graph
whose weights moved and the module drops its graphs (GPU test: ``tests/gpu/test_gpu_calls.py``).
Here, on the CPU, the bookkeeping without a graph."""

import torch

import blade
from blade.module import _Graph, _program_weights


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.lin(torch.relu(self.conv(x)).mean((2, 3)))


class _NeverReplayed:
    def replay(self):
        raise AssertionError("a graph with moved weights was replayed")


def test_capture_records_every_weight_and_moved_weights_refuse_replay():
    m = Net().eval()
    opt = blade.optimize(m, (torch.randn(2, 3, 8, 8),))
    variant = opt.variants[0]
    weights = _program_weights(variant)
    assert {id(w) for w in weights} == {id(p) for p in m.parameters()}
    x = torch.randn(2, 3, 8, 8)
    entry = _Graph(_NeverReplayed(), [x.clone()], [], weights=[(w, w.data_ptr()) for w in weights])
    with torch.no_grad():
        m.lin.weight.data += 1  # in place: same storage, a replay would read it
    assert all(w.data_ptr() == p for w, p in entry.weights)
    m.lin.weight.data = m.lin.weight.data.clone()  # new storage: the graph would read the old one
    assert opt._replay(variant, entry, [x]) is None
