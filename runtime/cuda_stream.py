"""The current CUDA stream in the form the C++ runtime takes it: ``(cudaStream_t as an int,
device index)``, read once per call.

``torch.cuda.current_stream(device).cuda_stream`` builds a Python ``Stream`` object to read one
integer (tens of microseconds on a slow host, on every graphs-off call); torch's own compiled code
reads the raw handle through ``torch._C._cuda_getCurrentRawStream``, which this uses where the
build has it (CUDA builds), else the public call."""

from __future__ import annotations

import torch

_RAW = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def launch_stream(device: torch.device) -> tuple[int, int]:
    """(the current stream's handle, the device index) of CUDA device ``device``."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if _RAW is not None:
        return _RAW(index), index
    return torch.cuda.current_stream(index).cuda_stream, index
