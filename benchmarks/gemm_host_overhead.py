"""Host microseconds per GEMM call on the GPU: torch's ``F.linear`` against Blade's cuBLASLt path
(``runtime/cublaslt_gemm.py``), and the parts of the latter (the layout mapping in Python, the
output allocation, the native call alone), for SD 1.5 UNet-like shapes in float16. Each number is
the median over blocks of calls issued back to back (the GPU runs behind), with a synchronize
between blocks.

    python benchmarks/gemm_host_overhead.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

from blade.runtime.cublaslt_gemm import CublasLtGemm, linear_problem


def host_us(fn, calls: int = 200, blocks: int = 7) -> float:
    fn()
    torch.cuda.synchronize()
    per = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        per.append((time.perf_counter() - t0) / calls * 1e6)
        torch.cuda.synchronize()
    return statistics.median(per)


def main() -> None:
    gemm, why = CublasLtGemm.create()
    if gemm is None:
        raise SystemExit(f"no cuBLASLt: {why}")
    lt = gemm._lt
    shapes = [((2, 4096, 320), 320), ((2, 4096, 320), 2560), ((2, 77, 768), 320), ((2, 256, 1280), 1280)]
    print(f"{'x':>18} {'N':>5} {'F.linear':>9} {'cuBLASLt':>9} {'mapping':>8} {'empty':>6} {'native':>7} "
          f"{'stream':>7} {'run':>7}  plans")
    for shape, n in shapes:
        x = torch.randn(shape, device="cuda", dtype=torch.float16)
        w = torch.randn(n, shape[-1], device="cuda", dtype=torch.float16)
        b = torch.randn(n, device="cuda", dtype=torch.float16)
        t_torch = host_us(lambda: F.linear(x, w, b))
        t_lt = host_us(lambda: gemm("linear", [x, w, b]))
        t_map = host_us(lambda: linear_problem(x, w, b))
        out = torch.empty((*shape[:-1], n), device="cuda", dtype=torch.float16)
        t_empty = host_us(lambda: torch.empty((*shape[:-1], n), device="cuda", dtype=torch.float16))
        p = linear_problem(x, w, b)
        ws = gemm._workspace(0, torch._C._cuda_getCurrentRawStream(0))
        stream = torch._C._cuda_getCurrentRawStream(0)
        args = (p.dtype, p.transa, p.transb, p.m, p.n, p.k, w.data_ptr(), p.lda, p.stride_a, x.data_ptr(), p.ldb,
                p.stride_b, out.data_ptr(), p.ldd, p.stride_d, p.batch, b.data_ptr(), ws.data_ptr(), ws.numel(),
                stream, 0)
        t_native = host_us(lambda: lt.gemm(*args))
        plan = next(iter(v for v in gemm._layouts.values() if v and v[0] == p))[2][-1][0]
        run_args = (plan, w.data_ptr(), x.data_ptr(), out.data_ptr(), b.data_ptr(), ws.data_ptr(), stream, 0)
        t_run = host_us(lambda: lt.run(*run_args))
        t_stream = host_us(lambda: torch._C._cuda_getCurrentRawStream(0))
        print(f"{str(shape):>18} {n:>5} {t_torch:9.1f} {t_lt:9.1f} {t_map:8.1f} {t_empty:6.1f} {t_native:7.1f} "
              f"{t_stream:7.2f} {t_run:7.1f}  {lt.plans}")


if __name__ == "__main__":
    main()
