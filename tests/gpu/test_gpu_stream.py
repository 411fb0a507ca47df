"""GPU tests (skipped without CUDA): the stream handle the C++ runtime launches on
(``runtime/cuda_stream.py``) is torch's current stream, on the default stream and inside
``torch.cuda.stream(...)``, and a graphs-off call made on a side stream computes there."""

import pytest
import torch
import torch.nn.functional as F

import blade
from blade.runtime.cuda_stream import launch_stream

pytestmark = pytest.mark.gpu


def test_launch_stream_is_torchs_current_stream():
    dev = torch.device("cuda")
    index = torch.cuda.current_device()
    assert launch_stream(dev) == (torch.cuda.current_stream(dev).cuda_stream, index)
    assert launch_stream(torch.device("cuda", index)) == launch_stream(dev)
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        assert launch_stream(dev) == (side.cuda_stream, index)
        assert launch_stream(dev)[0] != torch.cuda.default_stream(dev).cuda_stream
    assert launch_stream(dev)[0] == torch.cuda.current_stream(dev).cuda_stream


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(64, 64)
        self.norm = torch.nn.LayerNorm(64)

    def forward(self, x):
        return F.gelu(self.norm(self.lin(x))) + x


def test_graphs_off_call_on_a_side_stream():
    model = Net().cuda().half().eval()
    x = torch.randn(3, 37, 64, device="cuda", dtype=torch.float16)
    opt = blade.optimize(model, x, config=blade.Config(cuda_graphs=False))
    with torch.no_grad():
        want = model(x)
        for _ in range(3):  # the third call runs the C++ step list
            opt(x)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            y = torch.randn(3, 37, 64, device="cuda", dtype=torch.float16)
            got = opt(y)
            ref = model(y)
        side.synchronize()
    torch.testing.assert_close(got, ref, rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(opt(x), want, rtol=2e-2, atol=2e-2)
