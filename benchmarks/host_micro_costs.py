"""Host cost of the torch calls a graphs-off call makes around the C++ loop (one CUDA device):
reading 700 weight addresses, the current stream, allocations, views.

    python benchmarks/host_micro_costs.py
"""
import torch, time
d = torch.device("cuda")
ws = [torch.empty(320, 320, device=d, dtype=torch.float16) for _ in range(700)]
def t(name, fn, n=2000):
    for _ in range(50): fn()
    t0 = time.perf_counter_ns()
    for _ in range(n): fn()
    print(f"{name:45s} {(time.perf_counter_ns() - t0) / n / 1e3:8.2f} us")
DP, IC = torch.Tensor.data_ptr, torch.Tensor.is_contiguous
t("700 data_ptr (map)", lambda: list(map(DP, ws)), 200)
t("700 is_contiguous (map)", lambda: list(map(IC, ws)), 200)
t("current_stream(d).cuda_stream", lambda: torch.cuda.current_stream(d).cuda_stream)
t("_cuda_getCurrentRawStream(0)", lambda: torch._C._cuda_getCurrentRawStream(0))
t("torch.cuda.current_device()", lambda: torch.cuda.current_device())
t("torch.empty 1 MB uint8 cuda", lambda: torch.empty(1 << 20, dtype=torch.uint8, device=d))
t("torch.empty (2,4,64,64) f16 cuda", lambda: torch.empty((2, 4, 64, 64), dtype=torch.float16, device=d))
def ng():
    with torch.no_grad():
        pass
t("with torch.no_grad()", ng)
a = torch.empty(1 << 20, dtype=torch.uint8, device=d)
t("as_strided view", lambda: torch.as_strided(a, (100,), (1,), 0))
t("x.permute(0,3,1,2)", lambda: ws[0].view(1, 320, 320, 1).permute(0, 3, 1, 2))
