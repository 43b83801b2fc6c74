"""What layer normalisation, zoneout and recurrent dropout cost: one training step (forward and
backward) of an rnnkit layer with each, against the plain layer and torch.nn's (float32).

    python benchmarks/bench_step_extras.py [--config N,T,D,H] [--cell lstm|gru] [--repeat 7]

Medians of ``--repeat`` alternating rounds, and each time as a ratio to torch.nn's plain layer
in the same round (PyTorch has none of the three built in). Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE before running; the header names the CPU and the BLAS kernel that ran.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_layers import alternate, blas_info, cpu_name, medians, paired_ratio  # noqa: E402

import rnnkit  # noqa: E402

EXTRAS = {"plain": {}, "layer norm": {"layer_norm": True}, "zoneout 0.1": {"zoneout": 0.1},
          "recurrent dropout 0.2": {"recurrent_dropout": 0.2}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="32,100,128,256", help="N,T,D,H (default: %(default)s)")
    ap.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    import torch

    n, t, d, h = map(int, args.config.split(","))
    torch.set_num_threads(1)
    x = np.random.default_rng(0).standard_normal((n, t, d)).astype(np.float32)
    dout = np.ones((n, t, h), np.float32)
    cls = rnnkit.LSTM if args.cell == "lstm" else rnnkit.GRU
    kw = {} if args.cell == "lstm" else {"reset_after": True}

    def ours(options):
        layer = cls(d, h, **kw, **options)

        def step():
            out, _, cache = layer.forward(x)
            layer.backward(dout, None, cache)
        return step

    mod = (torch.nn.LSTM if args.cell == "lstm" else torch.nn.GRU)(d, h, batch_first=True)
    xt = torch.from_numpy(x).requires_grad_()
    dt = torch.from_numpy(dout)

    def theirs():
        out, _ = mod(xt)
        out.backward(dt)

    fns = {"torch.nn": theirs, **{k: ours(v) for k, v in EXTRAS.items()}}
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        times = alternate(fns, args.repeat)
    med = medians(times)
    print(f"# {cpu_name()}; BLAS {blas_info()}; {args.cell} (N, T, D, H) = ({n}, {t}, {d}, {h}), "
          f"float32, one thread, training step, {args.repeat} rounds")
    print(f"{'':24s} {'ms':>8s} {'÷ torch.nn':>11s}")
    for k in fns:
        r, lo, hi = paired_ratio(times[k], times["torch.nn"])
        print(f"{k:24s} {med[k]:8.1f} {r:8.2f} ({lo:.2f}–{hi:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
