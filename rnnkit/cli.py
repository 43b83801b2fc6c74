"""The ``rnnkit`` command line: it parses and calls, nothing more."""

from __future__ import annotations

import argparse
import json
import sys


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _length(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"the sequence length must be at least 2, got {value}")
    return value


def _clip(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"clip must be positive (or 'none'), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .init import INITS
    from .models import CELL_SPECS

    cells = list(CELL_SPECS)
    ap = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on NumPy "
                                 "with hand-derived backpropagation through time.")
    ap.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train a small network on a generated task and print the "
                          "loss falling", description="Train a recurrent network on the adding "
                          "problem (two marked numbers; predict their sum) and print the loss.")
    demo.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm",
                      help="recurrent cell (default: lstm)")
    demo.add_argument("--length", type=_length, default=30, help="sequence length T (default: 30)")
    demo.add_argument("--hidden", type=_positive_int, default=32,
                      help="hidden size H (default: 32)")
    demo.add_argument("--steps", type=_positive_int, default=1500,
                      help="training steps (default: 1500)")
    demo.add_argument("--batch-size", type=_positive_int, default=64,
                      help="batch size (default: 64)")
    demo.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    flow = sub.add_parser("gradflow", help="show how the gradient vanishes or explodes back "
                          "through time", description="Print ‖∂L/∂h_k‖ for every step k of "
                          "untrained layers (loss at the last step) and plot it on a log scale.")
    flow.add_argument("--cell", default="rnn,lstm,gru",
                      help=f"comma-separated cells, of {', '.join(cells)} (default: rnn,lstm,gru)")
    flow.add_argument("--length", type=_length, default=100, help="sequence length (default: 100)")
    flow.add_argument("--init", choices=INITS, default=None,
                      help="initialisation of W_hh (default: each cell's own; irnn: identity)")
    flow.add_argument("--gain", type=float, default=1.0,
                      help="multiply W_hh by this after initialising (default: 1)")
    flow.add_argument("--hidden", type=_positive_int, default=64,
                      help="hidden size (default: 64)")
    flow.add_argument("--input-size", type=_positive_int, default=8,
                      help="input features, drawn N(0, 1) (default: 8)")
    flow.add_argument("--batch-size", type=_positive_int, default=32,
                      help="sequences averaged (default: 32)")
    flow.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    flow.add_argument("--every", type=_positive_int, default=None,
                      help="print every k-th step (default: about 10 rows)")
    flow.add_argument("--out", default=None, help="write the plot to this PNG")
    flow.add_argument("--json", action="store_true", help="print one JSON object instead")

    train = sub.add_parser("train", help="train a model", description="Train a model.")
    tsub = train.add_subparsers(dest="task", metavar="TASK")
    tsub.required = True
    for task, what in (("adding", "the adding problem (Hochreiter & Schmidhuber 1997)"),
                       ("copy", "the copy-memory task (Arjovsky et al. 2016)")):
        t = tsub.add_parser(task, help=f"{what}, generated", description=f"Train on {what} "
                            "and report the test loss against the memoryless baseline.")
        t.add_argument("--length", type=_length, required=True,
                       help="T: the distance to bridge")
        t.add_argument("--cell", choices=cells, default="lstm", help="cell (default: lstm)")
        t.add_argument("--init", choices=INITS, default=None,
                       help="initialisation of W_hh (default: the cell's own)")
        t.add_argument("--gain", type=float, default=1.0,
                       help="multiply W_hh by this after initialising (default: 1)")
        t.add_argument("--hidden", type=_positive_int, default=128,
                       help="hidden size (default: 128)")
        t.add_argument("--layers", type=_positive_int, default=1,
                       help="stacked layers (default: 1)")
        t.add_argument("--sequences", type=_positive_int, default=100_000,
                       help="training budget in sequences (default: 100000)")
        t.add_argument("--batch-size", type=_positive_int, default=50,
                       help="batch size (default: 50)")
        t.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
                       default="adam", help="optimizer (default: adam)")
        t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 0.001)")
        t.add_argument("--clip", type=_clip, default=1.0,
                       help="global gradient-norm clipping, or 'none' (default: 1)")
        t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        t.add_argument("--out", default=None,
                       help="run directory (default: runs/TASK-LENGTH-CELL)")
        t.add_argument("--quiet", action="store_true", help="no progress bar")
        t.add_argument("--json", action="store_true", help="print the summary as JSON")
    return ap


def _gradflow(args, ap) -> int:
    import numpy as np

    from .diagnostics import gradient_flow, plot_gradient_flow
    from .models import CELL_SPECS, make_recurrent

    cells = [c.strip() for c in args.cell.split(",") if c.strip()]
    for c in cells:
        if c not in CELL_SPECS:
            ap.error(f"unknown cell {c!r}; expected some of {', '.join(CELL_SPECS)}")
    x = np.random.default_rng(args.seed).standard_normal(
        (args.batch_size, args.length, args.input_size)).astype(np.float32)
    curves = {}
    for c in cells:
        layer = make_recurrent(c, args.input_size, args.hidden, init=args.init, gain=args.gain,
                               seed=args.seed)
        curves[c] = gradient_flow(layer, x, seed=args.seed)["l0"]
    if args.json:
        print(json.dumps({c: v.tolist() for c, v in curves.items()}))
    else:
        every = args.every or max(args.length // 10, 1)
        ks = sorted(set(range(args.length - 1, -1, -every)) | {0})
        print("‖∂L/∂h_k‖, loss at the last step (mean over "
              f"{args.batch_size} sequences; 0 = below 1e-30)")
        print(f"{'k':>6}" + "".join(f"{c:>12}" for c in cells))
        for k in ks:
            print(f"{k:>6}" + "".join(f"{curves[c][k]:>12.3e}" for c in cells))
    if args.out:
        init = args.init or "each cell's own"
        plot_gradient_flow(curves, args.out, f"gradient flow, T = {args.length}, init: {init}"
                           + (f", gain {args.gain}" if args.gain != 1 else ""))
        if not args.json:
            print(f"plot: {args.out}")
    return 0


def _train_long_range(args) -> int:
    from .longrange import run

    summary = run(args.task, args.length, cell=args.cell, hidden_size=args.hidden,
                  num_layers=args.layers, init=args.init, gain=args.gain,
                  sequences=args.sequences, batch_size=args.batch_size, lr=args.lr,
                  optimizer=args.optimizer, clip_norm=args.clip, seed=args.seed, out=args.out,
                  progress=not args.quiet and not args.json)
    if args.json:
        print(json.dumps(summary))
        return 0
    verdict = "SOLVED" if summary["solved"] else "not solved"
    if summary["diverged"]:
        verdict = f"diverged: {summary['diverged']}"
    print(f"{args.task} T={args.length} {args.cell}: test loss {summary['test_loss']:.4g}, "
          f"baseline {summary['baseline']:.4g} ({verdict}; solved = below a tenth of the "
          f"baseline); max gradient norm {summary['grad_norm_max']:.3g}; "
          f"{summary['sequences']} sequences in {summary['seconds']} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    try:
        if args.command == "demo":
            from .demo import run_demo

            run_demo(cell=args.cell, length=args.length, hidden=args.hidden, steps=args.steps,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed)
            return 0
        if args.command == "gradflow":
            return _gradflow(args, ap)
        if args.command == "train":
            return _train_long_range(args)
    except ValueError as exc:
        ap.exit(2, f"rnnkit {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
