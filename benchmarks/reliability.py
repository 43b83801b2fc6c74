"""Reliability figures for docs/reliability.md: memory over a long training run, runs killed
and resumed from the command line, and concurrent writers of one run directory.

    python benchmarks/reliability.py memory --steps 100000
    python benchmarks/reliability.py kills --kills 20     # SIGKILL, then rnnkit train --resume
    python benchmarks/reliability.py writers --trials 4   # two rnnkit train into one --out

``kills``: a small classifier trained by ``rnnkit train`` is killed with SIGKILL at random
instants (inside epochs, checkpoint writes and link swaps alike) and continued each time with
``--resume`` (or started again while no checkpoint exists), until it finishes; its weights
must equal, bit for bit, those of the same command run without interruption. ``writers``:
two ``rnnkit train`` into the same ``--out`` at once; exactly one may write, the other must
be refused naming the holder.

Trains a small GRU classifier for ``--steps`` optimiser steps with the real Trainer
(checkpoints, metrics log and curves every epoch) and samples the process's resident memory
every ``--every`` steps; prints the samples and the growth after warm-up, and writes them as
JSON. A cache or log that grows without bound shows up as a steady climb.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def long_run(steps: int, every: int, run_dir: Path, steps_per_epoch: int = 10_000) -> list:
    from rnnkit.models import ClassifierConfig, SequenceClassifier
    from rnnkit.train import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    batch = 4
    data = [(rng.integers(1, 20, rng.integers(2, 9)).tolist(), int(rng.integers(0, 3)))
            for _ in range(steps_per_epoch * batch)]
    model = SequenceClassifier(ClassifierConfig(vocab_size=20, num_classes=3, embedding_dim=8,
                                                hidden_size=8, cell="gru", dropout=0.1))
    samples = []
    calls = [0]
    inner = model.forward_backward
    t0 = time.perf_counter()

    def counted(b):
        calls[0] += 1
        if calls[0] % every == 0:
            samples.append({"step": calls[0], "rss_mb": round(rss_mb(), 2),
                            "seconds": round(time.perf_counter() - t0, 1)})
        return inner(b)

    model.forward_backward = counted
    epochs = -(-steps // steps_per_epoch)
    Trainer(model, data, data[:200], TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3,
                                                 progress=False), run_dir).fit()
    return samples


def _train_command(data: Path, out: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "rnnkit", "train", "classify", "--train", str(data), "--out",
            str(out), "--epochs", "12", "--hidden", "32", "--embedding-dim", "16", "--quiet",
            "--lr", "0.005"] + (["--resume"] if resume else [])


def _data(path: Path) -> Path:
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(300)]
    rows = []
    for _ in range(8000):
        toks = rng.choice(words, rng.integers(5, 30))
        rows.append(" ".join(toks) + f"\t{int('w7' in toks or 'w11' in toks)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def kills(n_kills: int, work: Path, seed: int) -> dict:
    import subprocess

    from rnnkit import io

    data = _data(work / "d.tsv")
    t0 = time.perf_counter()
    subprocess.run(_train_command(data, work / "reference", False), check=True)
    full_s = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    run, done, killed, starts = work / "killed", False, 0, 0
    while not done:
        resume = (run / "last").exists()
        proc = subprocess.Popen(_train_command(data, run, resume), stderr=subprocess.PIPE,
                                text=True)
        starts += 1
        if killed < n_kills:
            try:
                proc.wait(timeout=rng.uniform(0.3, 3.0))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed += 1
                continue
        err = proc.communicate()[1]
        if proc.returncode != 0:
            raise SystemExit(f"a run failed after {killed} kills: {err.strip()}")
        done = True
    ref, _ = io.load_model(work / "reference" / "last")
    got, _ = io.load_model(run / "last")
    equal = all(np.array_equal(p, got.params[k]) for k, p in ref.params.items())
    return {"kills": killed, "starts": starts, "bit_identical": equal,
            "uninterrupted_seconds": round(full_s, 1)}


def writers(trials: int, work: Path) -> list[dict]:
    import subprocess

    data = _data(work / "d.tsv")
    out = []
    for k in range(trials):
        run = work / f"shared-{k}"
        procs = [subprocess.Popen(_train_command(data, run, False), stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        results = [(p.wait(), p.communicate()[1].strip()) for p in procs]
        codes = sorted(c for c, _ in results)
        refused = [e for c, e in results if c != 0]
        out.append({"exit_codes": codes, "refusal": refused[0] if refused else None,
                    "one_writer": codes == [0, 2] and "another rnnkit process (pid"
                    in refused[0]})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["memory", "kills", "writers"], nargs="?", default="memory")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=5_000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default="benchmarks/results/reliability.json")
    args = ap.parse_args(argv)
    if args.what in ("kills", "writers"):
        with tempfile.TemporaryDirectory() as tmp:
            result = (kills(args.kills, Path(tmp), args.seed) if args.what == "kills"
                      else writers(args.trials, Path(tmp)))
        print(json.dumps(result, indent=1))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        samples = long_run(args.steps, args.every, Path(tmp) / "run")
    for s in samples:
        print(f"step {s['step']:>7}  rss {s['rss_mb']:8.2f} MB  {s['seconds']:7.1f} s")
    # warm-up: the first epoch's end imports matplotlib and compiles what the dev pass needs
    warm = next((s for s in samples if s["step"] > 10_000), samples[0])
    growth = samples[-1]["rss_mb"] - warm["rss_mb"]
    print(f"growth from step {warm['step']} to {samples[-1]['step']}: {growth:+.2f} MB")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"samples": samples, "growth_mb": growth,
                                           "python": sys.version.split()[0]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
