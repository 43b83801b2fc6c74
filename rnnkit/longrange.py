"""Long-range experiments: train a model on the adding problem or the copy-memory task at a
given length and report the test loss against the task's baseline (``rnnkit train adding|copy``
and ``benchmarks/long_range.py`` call this)."""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .models import RegressorConfig, SequenceRegressor, StepClassifier, StepClassifierConfig
from .options import RecurrentOptions
from .tasks import (
    ADDING_BASELINE_MSE,
    COPY_CLASSES,
    COPY_SYMBOLS,
    adding_problem,
    copy_baseline,
    copy_memory,
)
from .train import TrainConfig, Trainer, TrainingDiverged

TASKS = ("adding", "copy")


def make_data(task: str, n: int, length: int, rng: np.random.Generator) -> list:
    """``n`` examples (x (T, D), y) of the adding or copy task at sequence length
    ``length``, drawn from ``rng``."""
    if task == "adding":
        x, y = adding_problem(n, length, rng)
    elif task == "copy":
        x, y = copy_memory(n, length, rng)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return list(zip(x, y, strict=True))


def baseline(task: str, length: int) -> float:
    """The loss of the best memoryless predictor (MSE 1/6 for adding; 10 log 8/(T+20) copy)."""
    return ADDING_BASELINE_MSE if task == "adding" else copy_baseline(length)


def run(task: str, length: int, cell: str = "lstm", hidden_size: int = 128,
        num_layers: int = 1, options: dict | None = None, sequences: int = 100_000,
        batch_size: int = 50, lr: float = 1e-3,
        optimizer: str = "adam", clip_norm: float | None = 1.0, seed: int = 0,
        out: str | Path | None = None, progress: bool = False) -> dict:
    """Train a ``cell`` with ``options`` (RecurrentOptions fields: init, gain, forget_bias,
    chrono, …) on ``sequences`` generated training sequences (a fixed set of at most 20,000,
    repeated for as many epochs as the budget allows) and evaluate on 2,000 fresh ones.

    Returns a summary: test loss, baseline, ``solved`` (test loss below a tenth of the
    baseline), the largest gradient norm seen, and ``diverged`` (the message) when the loss or
    the gradient became non-finite.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    if sequences < batch_size:
        raise ValueError(f"sequences ({sequences}) must be at least one batch ({batch_size})")
    rng = np.random.default_rng(seed)
    size = min(sequences, 20_000)
    epochs = max(sequences // size, 1)
    train = make_data(task, size, length, rng)
    dev = make_data(task, 500, length, rng)
    test = make_data(task, 2000, length, rng)
    opts = RecurrentOptions(**(options or {}))
    sizes = dict(hidden_size=hidden_size, num_layers=num_layers, cell=cell, seed=seed)
    if task == "adding":
        model = SequenceRegressor(RegressorConfig(input_size=2, **sizes, **asdict(opts)))
    else:
        model = StepClassifier(StepClassifierConfig(num_symbols=COPY_SYMBOLS,
                                                    num_classes=COPY_CLASSES, **sizes,
                                                    **asdict(opts)))
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                      clip_norm=clip_norm, bucket=False, seed=seed, progress=progress)
    if out is not None:
        run_dir = Path(out)
    else:  # a fresh directory per run: runs/adding-100-lstm, runs/adding-100-lstm-2, …
        run_dir = base = Path("runs") / f"{task}-{length}-{cell}"
        k = 1
        while run_dir.exists():
            k += 1
            run_dir = base.with_name(f"{base.name}-{k}")
    trainer = Trainer(model, train, dev, cfg, run_dir,
                      extra_config={"task": task, "length": length})
    summary = {"task": task, "length": length, "cell": cell,
               "init": opts.init or "default", "gain": opts.gain,
               "forget_bias": opts.forget_bias, "chrono": opts.chrono,
               "hidden_size": hidden_size, "sequences": epochs * size,
               "clip_norm": clip_norm, "baseline": baseline(task, length), "diverged": None}
    t0 = time.perf_counter()
    try:
        history = trainer.fit()
        summary["grad_norm_max"] = max(r["grad_norm_max"] for r in history)
    except TrainingDiverged as exc:
        summary["diverged"] = str(exc).split(";")[0]
        summary["grad_norm_max"] = math.inf
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if summary["diverged"] is None:
        summary["test_loss"] = trainer.evaluate(test)["loss"]
    else:
        summary["test_loss"] = math.nan
    summary["solved"] = bool(summary["test_loss"] < 0.1 * summary["baseline"])
    return summary
