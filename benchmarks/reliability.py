"""Reliability figures for docs/reliability.md: memory over a long training run.

    python benchmarks/reliability.py --steps 100000

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=5_000)
    ap.add_argument("--json", default="benchmarks/results/reliability.json")
    args = ap.parse_args(argv)
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
