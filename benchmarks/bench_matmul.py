"""The machine's measured matmul peak: fp32 (or bf16) GEMM GFLOP/s, the denominator of MFU.

    python benchmarks/bench_matmul.py --size 2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def matmul_peak(size: int = 2048, device: str = "cpu", dtype: str = "float32", seconds: float = 3.0) -> dict:
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(size, size, device=device, dtype=dt)
    b = torch.randn(size, size, device=device, dtype=dt)
    c = torch.empty(size, size, device=device, dtype=dt)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    torch.mm(a, b, out=c)
    sync()
    best, reps, t_end = 0.0, 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end or reps < 3:
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        best = max(best, 2 * size**3 / (time.perf_counter() - t0) / 1e9)
        reps += 1
    return {"size": size, "dtype": dtype, "device": device, "best_gflops": best, "reps": reps,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    r = matmul_peak(a.size, a.device, a.dtype, a.seconds)
    print(f"{a.size}x{a.size} {a.dtype} GEMM on {a.device}: best {r['best_gflops']:.1f} GFLOP/s over {r['reps']} reps")
    if a.json:
        open(a.json, "w").write(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
