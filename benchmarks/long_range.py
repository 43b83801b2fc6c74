"""Reproduce the classic long-range results: who solves the adding problem and the copy-memory
task as the distance T grows, which initialisations make the LSTM and GRU solve them, and what
clipping does to an exploding RNN.

For each T and each model — simple RNN (tanh), IRNN (ReLU, identity initialisation; Le et al.
2015), LSTM and GRU with PyTorch's initialisation, the LSTM with a forget-gate bias of 1 (Gers
et al. 2000), the LSTM and GRU with chrono initialisation for the task's whole length (Tallec &
Ollivier 2018) — train on the same budget of generated sequences with the same optimiser, and
report the test loss (MSE for adding, cross-entropy per step for copy) against the memoryless
baseline (1/6; 10 log 8 / (T + 20)). "Solved" means below a tenth of the baseline. Then the
exploding-gradient case: a tanh RNN whose W_hh starts orthogonal × 1.5, trained with plain SGD
with and without global-norm clipping.

    python benchmarks/long_range.py                       # the full table, 2 worker processes
    python benchmarks/long_range.py --adding-lengths 10,50 --copy-lengths 10 \
        --adding-sequences 20000 --copy-sequences 20000   # a quick look

Writes long_range.json, long_range.md and long_range.png into --out (default
benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from rnnkit.longrange import run
from rnnkit.tasks import COPY_MEMORY

#: name → (cell, recurrent options); "chrono": "T" means T_max = the sequence's whole length.
MODELS = {
    "rnn": ("rnn", {}),
    "irnn": ("irnn", {}),
    "lstm": ("lstm", {}),
    "lstm, forget bias 1": ("lstm", {"forget_bias": 1.0}),
    "lstm, chrono": ("lstm", {"chrono": "T"}),
    "gru": ("gru", {}),
    "gru, chrono": ("gru", {"chrono": "T"}),
}


def _options(name: str, task: str, length: int) -> tuple[str, dict]:
    cell, options = MODELS[name]
    if options.get("chrono") == "T":
        total = length + 2 * COPY_MEMORY if task == "copy" else length
        options = {**options, "chrono": total}
    return cell, options


def _one(job: dict) -> dict:
    """One training run in a worker process, on one thread (the table's runs share the cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        cell, options = _options(job["model"], job["task"], job["length"])
        r = run(job["task"], job["length"], cell=cell, options=options,
                hidden_size=job["hidden"], sequences=job["sequences"], lr=job["lr"],
                seed=job["seed"], out=job["out"])
    return {**r, "model": job["model"]}


def table(rows: list[dict], task: str, lengths: list[int]) -> str:
    lines = [f"| {task} | " + " | ".join(f"T = {t}" for t in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    by = {(r["model"], r["length"]): r for r in rows if r["task"] == task}
    for model in MODELS:
        if not any(m == model for m, _ in by):
            continue
        cells = []
        for t in lengths:
            r = by.get((model, t))
            if r is None:
                cells.append("")
                continue
            mark = " ✓" if r["solved"] else ""
            cells.append(f"{r['test_loss']:.3g} ({r['test_loss'] / r['baseline']:.0%}){mark}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    base = [f"{rows_baseline(rows, task, t):.3g}" for t in lengths]
    lines.append("| *baseline* | " + " | ".join(base) + " |")
    return "\n".join(lines)


def rows_baseline(rows, task, t):
    return next((r["baseline"] for r in rows if r["task"] == task and r["length"] == t), math.nan)


def plot(rows: list[dict], lengths: dict[str, list[int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, task in zip(axes, ("adding", "copy"), strict=True):
        for model in MODELS:
            pts = [(r["length"], r["test_loss"] / r["baseline"]) for r in rows
                   if r["task"] == task and r["model"] == model
                   and math.isfinite(r["test_loss"])]
            if pts:
                ax.semilogy(*zip(*sorted(pts), strict=True), marker="o", label=model)
        ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="baseline")
        ax.axhline(0.1, color="grey", linestyle=":", linewidth=1, label="solved below")
        ax.set_xticks(lengths.get(task) or [])
        ax.set_xlabel("T")
        ax.set_ylabel("test loss / baseline")
        ax.set_title(f"{task} problem" if task == "adding" else "copy-memory task")
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--adding-lengths", type=_ints, default=[10, 50, 100, 200],
                    help="comma-separated T of the adding problem ('' skips it)")
    ap.add_argument("--copy-lengths", type=_ints, default=[10, 50, 100],
                    help="comma-separated T of the copy task ('' skips it)")
    ap.add_argument("--models", default=";".join(MODELS),
                    help=f"semicolon-separated, of: {'; '.join(MODELS)}")
    ap.add_argument("--adding-sequences", type=int, default=500_000,
                    help="training sequences per adding run, the same for every model "
                    "(default: 500000)")
    ap.add_argument("--copy-sequences", type=int, default=1_000_000,
                    help="training sequences per copy run (default: 1000000)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size")
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                    help="runs at once, one thread each (default: 2)")
    ap.add_argument("--out", default="benchmarks/results", help="output directory")
    ap.add_argument("--no-exploding", action="store_true", help="skip the clipping comparison")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lengths = {"adding": args.adding_lengths, "copy": args.copy_lengths}
    budget = {"adding": args.adding_sequences, "copy": args.copy_sequences}
    models = [m.strip() for m in args.models.split(";") if m.strip()]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; expected some of {list(MODELS)}")
    setup = (f"training sequences per run: adding {budget['adding']:,}, copy "
             f"{budget['copy']:,} (batch 50, Adam lr {args.lr}, global-norm clipping 1.0), "
             f"hidden size {args.hidden}, seed {args.seed}")
    print("#", setup, flush=True)
    jobs = [dict(task=task, length=t, model=m, hidden=args.hidden, sequences=budget[task],
                 lr=args.lr, seed=args.seed,
                 out=str(out / "runs" / f"{task}-{t}-{m.replace(', ', '-').replace(' ', '')}"))
            for task in ("adding", "copy") for t in lengths[task] for m in models]
    jobs.sort(key=lambda j: -j["sequences"] * j["length"])  # longest first: fewer idle cores
    t_all = time.perf_counter()
    rows, explode = [], []
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for r in pool.map(_one, jobs):
            rows.append(r)
            print(f"{r['task']:>6} T={r['length']:<4} {r['model']:<20} test "
                  f"{r['test_loss']:.4g} baseline {r['baseline']:.4g} "
                  f"{'SOLVED' if r['solved'] else ''} ({r['seconds']} s)", flush=True)
            json.dump({"setup": setup, "rows": rows}, open(out / "long_range.json", "w"),
                      indent=1)
    if not args.no_exploding:
        for clip in (None, 1.0):
            r = run("adding", 20, cell="rnn", options=dict(init="orthogonal", gain=1.5),
                    hidden_size=64, sequences=300_000, optimizer="sgd", lr=0.1,
                    clip_norm=clip, seed=args.seed, out=out / "runs" / f"exploding-clip-{clip}")
            explode.append(r)
            print(f"exploding: clip {clip}: test {r['test_loss']:.4g}, max grad norm "
                  f"{r['grad_norm_max']:.3g}, diverged: {r['diverged']}", flush=True)
    md = [f"Setup: {setup}. Cells: test loss (its fraction of the baseline); ✓ = solved "
          "(below 10% of the baseline).", ""]
    for task in ("adding", "copy"):
        if lengths[task]:
            md += [table(rows, task, lengths[task]), ""]
    if explode:
        md += ["Exploding gradients: tanh RNN, W_hh orthogonal × 1.5, hidden 64, adding T = 20, "
               "SGD lr 0.1, 300,000 sequences.", "",
               "| clipping | test MSE | largest gradient norm | outcome |", "|---|---|---|---|"]
        for r in explode:
            outcome = r["diverged"] or ("trains (solved)" if r["solved"] else "trains")
            md.append(f"| {r['clip_norm'] or 'none'} | {r['test_loss']:.4g} | "
                      f"{r['grad_norm_max']:.3g} | {outcome} |")
    md.append("")
    md.append(f"Wall time: {time.perf_counter() - t_all:.0f} s with {args.workers} worker(s).")
    (out / "long_range.md").write_text("\n".join(md) + "\n")
    json.dump({"setup": setup, "rows": rows, "exploding": explode},
              open(out / "long_range.json", "w"), indent=1)
    plot(rows, lengths, out / "long_range.png")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
