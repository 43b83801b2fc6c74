"""Reproduce the classic long-range result: who solves the adding problem and the copy-memory
task as the distance T grows, and what clipping does to an exploding RNN.

For T in {10, 50, 100, 200} and each model — simple RNN (tanh), IRNN (ReLU, identity
initialisation; Le et al. 2015), LSTM, GRU in both forms — train on the same budget of generated
sequences with the same optimiser, and report the test loss (MSE for adding, cross-entropy per
step for copy) against the memoryless baseline (1/6; 10 log 8 / (T + 20)). "Solved" means below
a tenth of the baseline. Then the exploding-gradient case: a tanh RNN whose W_hh starts
orthogonal × 1.5, trained with plain SGD with and without global-norm clipping.

    python benchmarks/long_range.py                         # the full table (about 30 min)
    python benchmarks/long_range.py --lengths 10,50 --sequences 20000   # a quick look

Writes long_range.json, long_range.md and long_range.png into --out (default
benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from rnnkit.longrange import run

MODELS = ["rnn", "irnn", "lstm", "gru", "gru-after"]


def table(rows: list[dict], task: str, lengths: list[int]) -> str:
    lines = [f"| {task} | " + " | ".join(f"T = {t}" for t in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    by = {(r["cell"], r["length"]): r for r in rows if r["task"] == task}
    for cell in MODELS:
        cells = []
        for t in lengths:
            r = by.get((cell, t))
            if r is None:
                cells.append("")
                continue
            mark = " ✓" if r["solved"] else ""
            cells.append(f"{r['test_loss']:.3g} ({r['test_loss'] / r['baseline']:.0%}){mark}")
        lines.append(f"| {cell} | " + " | ".join(cells) + " |")
    base = [f"{rows_baseline(rows, task, t):.3g}" for t in lengths]
    lines.append("| *baseline* | " + " | ".join(base) + " |")
    return "\n".join(lines)


def rows_baseline(rows, task, t):
    return next((r["baseline"] for r in rows if r["task"] == task and r["length"] == t), math.nan)


def plot(rows: list[dict], lengths: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, task in zip(axes, ("adding", "copy"), strict=True):
        for cell in MODELS:
            pts = [(r["length"], r["test_loss"] / r["baseline"]) for r in rows
                   if r["task"] == task and r["cell"] == cell and math.isfinite(r["test_loss"])]
            if pts:
                ax.semilogy(*zip(*sorted(pts), strict=True), marker="o", label=cell)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="baseline")
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="solved below")
        ax.set_xticks(lengths)
        ax.set_xlabel("T")
        ax.set_ylabel("test loss / baseline")
        ax.set_title(f"{task} problem" if task == "adding" else "copy-memory task")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="10,50,100,200", help="comma-separated T")
    ap.add_argument("--tasks", default="adding,copy", help="comma-separated: adding,copy")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated cells")
    ap.add_argument("--sequences", type=int, default=100_000,
                    help="training sequences per run, the same for every model")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results", help="output directory")
    ap.add_argument("--no-exploding", action="store_true", help="skip the clipping comparison")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = [int(t) for t in args.lengths.split(",")]
    tasks = args.tasks.split(",")
    models = args.models.split(",")
    rows, explode = [], []
    setup = (f"{args.sequences} training sequences per run (batch 50, Adam lr {args.lr}, "
             f"global-norm clipping 1.0), hidden size {args.hidden}, seed {args.seed}")
    print("#", setup, flush=True)
    t_all = time.perf_counter()
    for task in tasks:
        for t in lengths:
            for cell in models:
                r = run(task, t, cell=cell, hidden_size=args.hidden, sequences=args.sequences,
                        lr=args.lr, seed=args.seed, out=out / "runs" / f"{task}-{t}-{cell}")
                rows.append(r)
                print(f"{task:>6} T={t:<4} {cell:<10} test {r['test_loss']:.4g} baseline "
                      f"{r['baseline']:.4g} {'SOLVED' if r['solved'] else ''} "
                      f"({r['seconds']} s)", flush=True)
                json.dump({"setup": setup, "rows": rows}, open(out / "long_range.json", "w"),
                          indent=1)
    if not args.no_exploding:
        for clip in (None, 1.0):
            r = run("adding", 20, cell="rnn", options=dict(init="orthogonal", gain=1.5),
                    hidden_size=64,
                    sequences=300_000, optimizer="sgd", lr=0.1, clip_norm=clip, seed=args.seed,
                    out=out / "runs" / f"exploding-clip-{clip}")
            explode.append(r)
            print(f"exploding: clip {clip}: test {r['test_loss']:.4g}, max grad norm "
                  f"{r['grad_norm_max']:.3g}, diverged: {r['diverged']}", flush=True)
    md = [f"Setup: {setup}. Cells: test loss (its fraction of the baseline); ✓ = solved "
          "(below 10% of the baseline).", ""]
    for task in tasks:
        md += [table(rows, task, lengths), ""]
    if explode:
        md += ["Exploding gradients: tanh RNN, W_hh orthogonal × 1.5, hidden 64, adding T = 20, "
               "SGD lr 0.1, 300,000 sequences.", "",
               "| clipping | test MSE | largest gradient norm | outcome |", "|---|---|---|---|"]
        for r in explode:
            outcome = r["diverged"] or ("trains (solved)" if r["solved"] else "trains")
            md.append(f"| {r['clip_norm'] or 'none'} | {r['test_loss']:.4g} | "
                      f"{r['grad_norm_max']:.3g} | {outcome} |")
    md.append("")
    md.append(f"Wall time: {time.perf_counter() - t_all:.0f} s.")
    (out / "long_range.md").write_text("\n".join(md) + "\n")
    json.dump({"setup": setup, "rows": rows, "exploding": explode},
              open(out / "long_range.json", "w"), indent=1)
    plot(rows, lengths, out / "long_range.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
