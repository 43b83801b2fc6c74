"""Time rnnkit's recurrent layers against torch.nn.* on the CPU, in one run.

For each cell, configuration (N, T, D, H) and thread count, a training step (forward + full BPTT
backward to every parameter and the input) and inference (forward only, nothing kept; torch
under ``inference_mode``) are timed for rnnkit and torch alternately, and the medians and their
ratio rnnkit/torch are printed (below 1 means rnnkit is faster). float32, batch-first input.

    python benchmarks/bench_layers.py                       # everything (several minutes)
    python benchmarks/bench_layers.py --cells lstm --threads 1 --repeat 3
    python benchmarks/bench_layers.py --json results.json

GFLOP/s counts the recurrent layer's matrix products: forward 2·N·T·(D+H)·G·H (G gates), a
training step 3× that. The BLAS library and kernel in use come from threadpoolctl.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import numpy as np

import rnnkit

CONFIGS = [(1, 100, 64, 128), (32, 100, 128, 256), (64, 50, 512, 512), (128, 200, 256, 256)]
CELLS = {
    # name: (rnnkit factory, torch factory, gates); torch has only the reset-after GRU.
    "lstm": (lambda d, h: rnnkit.LSTM(d, h, seed=0),
             lambda nn, d, h: nn.LSTM(d, h, batch_first=True), 4),
    "gru": (lambda d, h: rnnkit.GRU(d, h, seed=0),
            lambda nn, d, h: nn.GRU(d, h, batch_first=True), 3),
    "gru-after": (lambda d, h: rnnkit.GRU(d, h, reset_after=True, seed=0),
                  lambda nn, d, h: nn.GRU(d, h, batch_first=True), 3),
    "rnn": (lambda d, h: rnnkit.RNN(d, h, seed=0),
            lambda nn, d, h: nn.RNN(d, h, batch_first=True), 1),
}


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_one(cell: str, cfg, threads: int, repeat: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    n, t, d, h = cfg
    ours_f, torch_f, gates = CELLS[cell]
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, t, d)).astype(np.float32)
        g = rng.standard_normal((n, t, h)).astype(np.float32)
        layer = ours_f(d, h)
        ref = torch_f(torch.nn, d, h)
        tx = torch.from_numpy(x).requires_grad_(True)
        tg = torch.from_numpy(g)

        def ours_train():
            out, _, cache = layer.forward(x)
            layer.backward(g, None, cache)

        def ours_infer():
            layer.forward(x, inference=True)

        def torch_train():
            out, _ = ref(tx)
            out.backward(tg)

        def torch_infer():
            with torch.inference_mode():
                ref(tx)

        for fn in (ours_train, torch_train, ours_infer, torch_infer):  # warm-up
            fn()
        res = {"ours_train": [], "torch_train": [], "ours_infer": [], "torch_infer": []}
        # Alternate the contestants so that drifts in clock or load hit both alike.
        for _ in range(repeat):
            res["ours_train"].append(median_ms(ours_train, 1))
            res["torch_train"].append(median_ms(torch_train, 1))
            res["ours_infer"].append(median_ms(ours_infer, 1))
            res["torch_infer"].append(median_ms(torch_infer, 1))
    med = {k: statistics.median(v) for k, v in res.items()}
    flops = 2.0 * n * t * (d + h) * gates * h
    return {
        "cell": cell, "N": n, "T": t, "D": d, "H": h, "threads": threads,
        **{f"{k}_ms": round(v, 3) for k, v in med.items()},
        "train_ratio": round(med["ours_train"] / med["torch_train"], 3),
        "infer_ratio": round(med["ours_infer"] / med["torch_infer"], 3),
        "ours_train_gflops": round(3 * flops / med["ours_train"] / 1e6, 1),
        "ours_infer_gflops": round(flops / med["ours_infer"] / 1e6, 1),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated: " + ",".join(CELLS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--configs", default=None,
                    help="semicolon-separated N,T,D,H (default: the four standard sizes)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    import torch

    cells = args.cells.split(",")
    for c in cells:
        if c not in CELLS:
            ap.error(f"unknown cell {c!r}; expected one of {', '.join(CELLS)}")
    configs = CONFIGS if args.configs is None else [
        tuple(int(v) for v in c.split(",")) for c in args.configs.split(";")]
    threads = [int(v) for v in args.threads.split(",")]
    meta = {"rnnkit": rnnkit.__version__, "numpy": np.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "blas": blas_info()}
    print(f"# rnnkit {meta['rnnkit']}, numpy {meta['numpy']}, torch {meta['torch']}, "
          f"float32; BLAS: " + "; ".join(
              f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in meta["blas"]))
    head = (f"{'cell':<10}{'N,T,D,H':<18}{'thr':>4}{'train ms':>10}{'torch':>9}{'ratio':>7}"
            f"{'GFLOP/s':>9}{'infer ms':>10}{'torch':>9}{'ratio':>7}")
    print(head)
    rows = []
    for cell in cells:
        for cfg in configs:
            for thr in threads:
                r = bench_one(cell, cfg, thr, args.repeat)
                rows.append(r)
                print(f"{cell:<10}{','.join(map(str, cfg)):<18}{thr:>4}"
                      f"{r['ours_train_ms']:>10.2f}{r['torch_train_ms']:>9.2f}"
                      f"{r['train_ratio']:>7.2f}{r['ours_train_gflops']:>9.1f}"
                      f"{r['ours_infer_ms']:>10.2f}{r['torch_infer_ms']:>9.2f}"
                      f"{r['infer_ratio']:>7.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
