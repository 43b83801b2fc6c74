"""The ``rnnkit`` command line: it parses and calls, nothing more."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    ap = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on NumPy "
                                 "with hand-derived backpropagation through time.")
    ap.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train a small network on a generated task and print the "
                          "loss falling", description="Train a recurrent network on the adding "
                          "problem (two marked numbers; predict their sum) and print the loss.")
    demo.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm",
                      help="recurrent cell (default: lstm)")
    demo.add_argument("--length", type=int, default=30, help="sequence length T (default: 30)")
    demo.add_argument("--hidden", type=int, default=32, help="hidden size H (default: 32)")
    demo.add_argument("--steps", type=int, default=1500, help="training steps (default: 1500)")
    demo.add_argument("--batch-size", type=int, default=64, help="batch size (default: 64)")
    demo.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate (default: 0.01)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    if args.command == "demo":
        from .demo import run_demo

        try:
            run_demo(cell=args.cell, length=args.length, hidden=args.hidden, steps=args.steps,
                     batch_size=args.batch_size, lr=args.lr, seed=args.seed)
        except ValueError as exc:
            ap.exit(2, f"rnnkit demo: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
