"""Time rnnkit's recurrent layers against torch.nn.* and onnxruntime on the CPU, in one run.

For each cell, configuration (N, T, D, H) and thread count, a training step (forward + full BPTT
backward to every parameter and the input) and inference (forward only, nothing kept; torch
under ``inference_mode``; onnxruntime, when installed, runs rnnkit's ONNX export of the same
weights, time-major, on the CPU provider with the same thread count) are timed alternately:
``--repeat`` rounds, each running every contestant once. Printed: the median times, and the
ratio rnnkit/torch (below 1 means rnnkit is faster) as the median over rounds of the round's own
ratio, with its quartiles (for inference also against the faster peer of each round) —
the two runs of a round meet the same state of the machine, which drifts by ~10% over minutes.
float32, batch-first input. A pause separates the contestants: BLAS and OpenMP worker threads
spin for a while after a call, and without it whichever library runs second loses up to a third
of its speed at 2 threads.

    python benchmarks/bench_layers.py                       # everything (~12 minutes)
    python benchmarks/bench_layers.py --repeat 9 --json bench.json   # the Xeon table (~20)
    python benchmarks/bench_layers.py --cells lstm --threads 1 --repeat 3
    python benchmarks/bench_layers.py --json results.json
    python benchmarks/bench_layers.py --bind                # OpenMP threads bound to cores

GFLOP/s counts the recurrent layer's matrix products: forward 2·N·T·(D+H)·G·H (G gates), a
training step 3× that; "% peak" divides by a large float32 GEMM measured in the same run at the
same thread count (the faster of NumPy's BLAS and, when rnnkit uses it, MKL); "need" is the % of
that peak a training step would have to sustain to take 0.8× torch's time. "MB" is the growth
of peak resident memory (VmHWM) during the first training step of a fresh process, whose
parameters and gradients already exist and whose libraries are warmed up on a tiny input — the
same procedure for both libraries. The variable-length case trains a bidirectional 2-layer LSTM
on lengths drawn uniformly from [T/4, T], against the same batch at full length and against torch
with ``pack_padded_sequence``. The BLAS library and kernel come from threadpoolctl; the
first-call line is the time of the first forward + backward in a fresh process (numba
compilation, or loading its on-disk cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import rnnkit
from rnnkit import backend, blas, plan

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import cpu_name  # noqa: E402

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
PAUSE_S = 0.15


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    return [{k: i.get(k) for k in ("internal_api", "version", "architecture", "num_threads")}
            for i in threadpool_info() if i.get("user_api") == "blas"]


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def alternate(fns: dict, repeat: int) -> dict:
    """ms of each run of each function, ``repeat`` rounds that run every function in turn with a
    pause between contestants."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            time.sleep(PAUSE_S)
            times[k].append(_timed(fn))
    return times


def medians(times: dict) -> dict:
    return {k: statistics.median(v) for k, v in times.items()}


def paired_ratio(ours: list, theirs: list) -> tuple[float, float, float]:
    """(median, lower quartile, upper quartile) of ours[i] / theirs[i]: runs of one round met
    the same state of the machine, so the ratios of rounds vary less than either time (this VM
    drifts by 10% over minutes)."""
    r = sorted(a / b for a, b in zip(ours, theirs, strict=True))
    q = statistics.quantiles(r, n=4, method="inclusive") if len(r) > 1 else [r[0]] * 3
    return statistics.median(r), q[0], q[2]


def _spread(lo: float, hi: float) -> str:
    return f"{lo:.2f}-{hi:.2f}"


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def memory_child(lib: str, cell: str, cfg) -> float:
    """In this (fresh) process: MB of peak-RSS growth during one training step."""
    import torch

    n, t, d, h = cfg
    ours_f, torch_f, _ = CELLS[cell]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    g = rng.standard_normal((n, t, h)).astype(np.float32)
    if lib == "rnnkit":
        warm = ours_f(4, 4)
        o, _, c = warm.forward(np.zeros((6, 3, 4), np.float32))
        warm.backward(o, None, c)
        layer = ours_f(d, h)

        def step():
            out, _, cache = layer.forward(x)
            layer.backward(g, None, cache)
    else:
        warm = torch_f(torch.nn, 4, 4)
        warm(torch.zeros(6, 3, 4, requires_grad=True))[0].sum().backward()
        ref = torch_f(torch.nn, d, h)
        for p in ref.parameters():
            p.grad = torch.zeros_like(p)
        tx = torch.from_numpy(x).requires_grad_(True)
        tg = torch.from_numpy(g)

        def step():
            out, _ = ref(tx)
            out.backward(tg)
    before = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    step()
    return round(max(_status_kb("VmHWM") - before, 0) / 1024, 1)


def peak_mb(lib: str, cell: str, cfg, threads: int) -> float | None:
    """Run memory_child in a fresh interpreter; None where it cannot be measured."""
    import os
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, "--memory-child", lib, cell, ",".join(map(str, cfg))]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def gemm_peak_gflops(threads: int) -> dict:
    """GFLOP/s of a 2048² float32 product through each BLAS in the process: NumPy's and, when
    rnnkit uses it, MKL. The peak is the faster of the two."""
    from threadpoolctl import threadpool_limits

    a = np.ones((2048, 2048), np.float32)
    out = {}
    with threadpool_limits(limits=threads, user_api="blas"):
        out["numpy"] = 2 * 2048**3 / min(_timed(lambda: a @ a) for _ in range(5)) / 1e6
        if blas.blas() == "mkl":
            c = np.empty_like(a)
            out["mkl"] = 2 * 2048**3 / min(_timed(lambda: blas.matmul(a, a, out=c))
                                           for _ in range(5)) / 1e6
    out["peak"] = max(out.values())
    return out


def ort_session(layer, threads: int):
    """onnxruntime (CPU provider, ``threads`` intra-op threads) running the layer exported by
    rnnkit in the operators' own layout (x (T, N, D), no lengths input); None without
    onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    from rnnkit.interop import export_layer_onnx

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory() as d:
        path = export_layer_onnx(layer, Path(d) / "layer.onnx", time_major=True, lengths=False)
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_version() -> str | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _path(p) -> str:
    """A plan in a few characters: products/layout, ×row blocks, +threads sharing each step."""
    return (f"{p.products}/{p.layout}" + (f"×{p.blocks}" if p.blocks > 1 else "")
            + (f"+{p.threads}thr" if p.threads > 1 else ""))


def bench_one(cell: str, cfg, threads: int, repeat: int, peak: float, memory: bool) -> dict:
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

        contestants = {"ours_train": ours_train, "torch_train": torch_train,
                       "ours_infer": ours_infer, "torch_infer": torch_infer}
        sess = ort_session(layer, threads)
        if sess is not None:
            x_tnd = np.ascontiguousarray(x.transpose(1, 0, 2))  # its layout, made untimed
            contestants["ort_infer"] = lambda: sess.run(None, {"x": x_tnd})
        times = alternate(contestants, repeat)
        plans = (_path(layer.plan(n, steps=t)),  # under this row's thread limit
                 _path(layer.plan(n, inference=True, steps=t)))
    med = medians(times)
    mem_ours = peak_mb("rnnkit", cell, cfg, threads) if memory else None
    mem_torch = peak_mb("torch", cell, cfg, threads) if memory else None
    flops = 2.0 * n * t * (d + h) * gates * h
    train_gf = 3 * flops / med["ours_train"] / 1e6
    out = {"cell": cell, "N": n, "T": t, "D": d, "H": h, "threads": threads,
           **{f"{k}_ms": round(v, 3) for k, v in med.items()}}
    for mode in ("train", "infer"):
        ratio, lo, hi = paired_ratio(times[f"ours_{mode}"], times[f"torch_{mode}"])
        out[f"{mode}_ratio"] = round(ratio, 3)
        out[f"{mode}_ratio_quartiles"] = [round(lo, 3), round(hi, 3)]
    # Inference against the faster peer of each round (torch or onnxruntime).
    best = times["torch_infer"]
    if "ort_infer" in times:
        best = [min(a, b) for a, b in zip(best, times["ort_infer"], strict=True)]
    ratio, lo, hi = paired_ratio(times["ours_infer"], best)
    out["infer_best_peer_ratio"] = round(ratio, 3)
    out["infer_best_peer_ratio_quartiles"] = [round(lo, 3), round(hi, 3)]
    out["plan_train"], out["plan_infer"] = plans
    out.update({
        "ours_train_gflops": round(train_gf, 1),
        "torch_train_gflops": round(3 * flops / med["torch_train"] / 1e6, 1),
        "ours_train_pct_peak": round(100 * train_gf / peak, 1),
        # What the targets ask of the machine: the % of GEMM peak a training step must
        # sustain to take 0.8× torch's time, and inference to take 1.0×.
        "train_target_pct_peak": round(100 * 3 * flops / (0.8 * med["torch_train"]) / 1e6
                                       / peak, 1),
        "infer_target_pct_peak": round(100 * flops / med["torch_infer"] / 1e6 / peak, 1),
        "ours_train_peak_mb": mem_ours, "torch_train_peak_mb": mem_torch,
    })
    return out


def bench_lengths(threads: int, repeat: int, cfg=(64, 100, 128, 256)) -> dict:
    """Bidirectional 2-layer LSTM, lengths uniform in [T/4, T], vs full length and torch packed."""
    import torch
    from threadpoolctl import threadpool_limits
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    n, t, d, h = cfg
    torch.set_num_threads(threads)
    with threadpool_limits(limits=threads, user_api="blas"):
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, t, d)).astype(np.float32)
        g = rng.standard_normal((n, t, 2 * h)).astype(np.float32)
        lengths = rng.integers(t // 4, t + 1, n)
        layer = rnnkit.LSTM(d, h, num_layers=2, bidirectional=True, seed=0)
        ref = torch.nn.LSTM(d, h, 2, batch_first=True, bidirectional=True)
        tx = torch.from_numpy(x).requires_grad_(True)
        tg = torch.from_numpy(g)
        tl = torch.from_numpy(lengths)

        def ours(lens):
            out, _, cache = layer.forward(x, lengths=lens)
            layer.backward(g, None, cache)

        def torch_packed():
            packed = pack_padded_sequence(tx, tl, batch_first=True, enforce_sorted=False)
            out, _ = ref(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=t)
            out.backward(tg)

        def torch_full():
            out, _ = ref(tx)
            out.backward(tg)

        med = medians(alternate({"ours_var": lambda: ours(lengths),
                                 "ours_full": lambda: ours(None),
                                 "torch_packed": torch_packed, "torch_full": torch_full},
                                repeat))
    return {"N": n, "T": t, "D": d, "H": h, "threads": threads,
            "token_fraction": round(float(lengths.sum()) / (n * t), 3),
            **{f"{k}_ms": round(v, 3) for k, v in med.items()},
            "var_over_full": round(med["ours_var"] / med["ours_full"], 3),
            "var_over_torch_packed": round(med["ours_var"] / med["torch_packed"], 3)}


def first_call_ms(cells) -> dict:
    """Time of the first forward + backward per cell in this process (compile or cache load)."""
    out = {}
    for cell in cells:
        layer = CELLS[cell][0](8, 8)
        x = np.zeros((8, 5, 8), np.float32)

        def step(layer=layer, x=x):
            o, _, c = layer.forward(x)
            layer.backward(o, None, c)
            o, _, c = layer.forward(x[:1])  # the whole-sequence kernels of small batches
            layer.backward(o, None, c)

        out[cell] = round(_timed(step), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", default=",".join(CELLS), help="comma-separated: " + ",".join(CELLS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--configs", default=None,
                    help="semicolon-separated N,T,D,H (default: the four standard sizes)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--engine", default="auto", choices=backend.ENGINES,
                    help="rnnkit kernel engine (default: auto = numba when installed)")
    ap.add_argument("--products", default=None, choices=plan.PRODUCTS,
                    help="force how the recurrent products are made (rnnkit.plan.forced; mkl and "
                         "cblas also make the layer's other products with that library); "
                         "default: the planner's choice for this machine")
    ap.add_argument("--no-lengths", action="store_true", help="skip the variable-length case")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the memory measurement (a fresh process per library and size)")
    ap.add_argument("--memory-child", nargs=3, metavar=("LIB", "CELL", "N,T,D,H"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--bind", action="store_true",
                    help="bind OpenMP threads to cores (OMP_PROC_BIND=true, OMP_PLACES=cores), "
                         "for both libraries: they share GNU OpenMP once torch is loaded")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.bind:  # read when OpenMP loads: before torch and before MKL's first product
        os.environ.update(OMP_PROC_BIND="true", OMP_PLACES="cores")
    if args.memory_child:
        lib, cell, cfg = args.memory_child
        print(memory_child(lib, cell, tuple(int(v) for v in cfg.split(","))))
        return 0
    import torch

    cells = args.cells.split(",")
    for c in cells:
        if c not in CELLS:
            ap.error(f"unknown cell {c!r}; expected one of {', '.join(CELLS)}")
    configs = CONFIGS if args.configs is None else [
        tuple(int(v) for v in c.split(",")) for c in args.configs.split(";")]
    threads = [int(v) for v in args.threads.split(",")]
    engine = backend.set_engine(args.engine)
    if args.products:
        if args.products in ("mkl", "cblas"):
            # Every product of the layer from one library, as where the planner chose it: MKL's
            # per-step products beside OpenBLAS's threads for the rest fought over the cores
            # (GRU (32, 100, 128, 256) training on 2 threads, AMD EPYC: 93 against 42 ms).
            blas.set_blas("mkl" if args.products == "mkl" else "numpy")
        forced = plan.forced(products=args.products)
        forced.__enter__()  # for the whole run
    first = first_call_ms(cells)
    meta = {"rnnkit": rnnkit.__version__, "engine": engine, "numpy": np.__version__,
            "torch": torch.__version__, "onnxruntime": ort_version(),
            "python": platform.python_version(),
            "machine": platform.machine(), "cpu": cpu_name(), "cpus": os.cpu_count(),
            "blas": blas_info(), "first_call_ms": first,
            "bound_threads": args.bind, "blas_choice": blas.choice(),
            "recurrent_products": plan.recurrent_products(),
            "products_choice": plan.products_choice(), "forced_products": args.products}
    print(f"# CPU: {meta['cpu']} ({meta['cpus']} logical CPUs); OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"# rnnkit {meta['rnnkit']} (engine {engine}), numpy {meta['numpy']}, torch "
          f"{meta['torch']}, onnxruntime {meta['onnxruntime']}, float32; BLAS: " + "; ".join(
              f"{b['internal_api']} {b['version']} ({b['architecture']})" for b in meta["blas"]))
    if args.bind:
        print("# OpenMP threads bound to cores (OMP_PROC_BIND=true, OMP_PLACES=cores)")
    print("# first forward+backward in this process (compile or cache load), ms: "
          + ", ".join(f"{k} {v}" for k, v in first.items()))
    gemm = {thr: gemm_peak_gflops(thr) for thr in threads}
    peaks = {thr: g["peak"] for thr, g in gemm.items()}
    meta["gemm_gflops"] = {str(k): {lib: round(v, 1) for lib, v in g.items()}
                           for k, g in gemm.items()}
    c = meta["blas_choice"]
    print(f"# rnnkit's BLAS for its products: {blas.blas()}" + (
        f" (measured on this machine: MKL packed {c['mkl_us']:.0f} µs, NumPy's BLAS "
        f"{c['numpy_us']:.0f} µs for (32, 256) @ (256, 1024))" if c else "") + (
        f"; products forced: {args.products}" if args.products else ""))
    pc = meta["products_choice"]
    print(f"# recurrent products: {meta['recurrent_products']}" + (
        f" (measured on this machine: rnnkit's own {pc['packed_us']:.0f} µs, the library's "
        f"({pc['library']}) {pc['library_us']:.0f} µs for (32, 256) @ (256, 1024))"
        if pc else ""))
    for n, t, _, _ in configs:
        print(f"# plan at N={n}, T={t}: training {rnnkit.LSTM(1, 1).plan(n, steps=t)}, "
              f"inference {rnnkit.LSTM(1, 1).plan(n, inference=True, steps=t)}")
    print("# float32 GEMM peak (2048², same run, the faster "
          "library), GFLOP/s: " + ", ".join(
              f"{k} thread(s) {g['peak']:.0f} (" + ", ".join(
                  f"{lib} {v:.0f}" for lib, v in g.items() if lib != "peak") + ")"
              for k, g in gemm.items()))
    print("# ratio: median over rounds of rnnkit / torch within a round, q1-q3 its quartiles; "
          "need: the % of peak that training at 0.8× torch's time would take; ort: "
          "onnxruntime inference (rnnkit's export, time-major); /best: rnnkit / the faster of "
          "torch and onnxruntime in each round; plan: the planner's path per row")
    head = (f"{'cell':<10}{'N,T,D,H':<17}{'thr':>3}{'train ms':>10}{'torch':>9}{'ratio':>7}"
            f"{'q1-q3':>11}{'GFLOP/s':>8}{'%peak':>6}{'need':>5}{'MB':>7}{'torchMB':>8}"
            f"{'infer ms':>10}{'torch':>9}{'ratio':>7}{'q1-q3':>11}{'ort':>9}{'/best':>7}"
            f"{'q1-q3':>11}  plan train | infer")
    print(head)
    rows = []
    for cell in cells:
        for cfg in configs:
            for thr in threads:
                r = bench_one(cell, cfg, thr, args.repeat, peaks[thr],
                              memory=not args.no_memory and thr == threads[0])
                rows.append(r)
                print(f"{cell:<10}{','.join(map(str, cfg)):<17}{thr:>3}"
                      f"{r['ours_train_ms']:>10.2f}{r['torch_train_ms']:>9.2f}"
                      f"{r['train_ratio']:>7.2f}{_spread(*r['train_ratio_quartiles']):>11}"
                      f"{r['ours_train_gflops']:>8.1f}{r['ours_train_pct_peak']:>6.0f}"
                      f"{r['train_target_pct_peak']:>5.0f}{r['ours_train_peak_mb']!s:>7}"
                      f"{r['torch_train_peak_mb']!s:>8}"
                      f"{r['ours_infer_ms']:>10.2f}{r['torch_infer_ms']:>9.2f}"
                      f"{r['infer_ratio']:>7.2f}{_spread(*r['infer_ratio_quartiles']):>11}"
                      f"{r.get('ort_infer_ms', float('nan')):>9.2f}"
                      f"{r['infer_best_peer_ratio']:>7.2f}"
                      f"{_spread(*r['infer_best_peer_ratio_quartiles']):>11}"
                      f"  {r['plan_train']} | {r['plan_infer']}", flush=True)
    lengths = []
    if not args.no_lengths:
        print("\n# variable lengths: BiLSTM, 2 layers, lengths ~ U[T/4, T], training step")
        print(f"{'N,T,D,H':<17}{'thr':>3}{'tokens':>7}{'var ms':>9}{'full ms':>9}{'var/full':>9}"
              f"{'torch packed':>13}{'var/packed':>11}{'torch full':>11}")
        for thr in threads:
            r = bench_lengths(thr, args.repeat)
            lengths.append(r)
            size = f"{r['N']},{r['T']},{r['D']},{r['H']}"
            print(f"{size:<17}{thr:>3}"
                  f"{r['token_fraction']:>7.2f}{r['ours_var_ms']:>9.2f}{r['ours_full_ms']:>9.2f}"
                  f"{r['var_over_full']:>9.2f}{r['torch_packed_ms']:>13.2f}"
                  f"{r['var_over_torch_packed']:>11.2f}{r['torch_full_ms']:>11.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "results": rows, "lengths": lengths}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
