"""The training loop: length-bucketed seeded batches, progress bar, evaluation, early stopping,
checkpoints that resume bit-for-bit, a JSON-lines metrics log and a PNG of the curves.

    trainer = Trainer(model, train_examples, dev_examples, TrainConfig(epochs=4), "runs/x")
    trainer.fit()                      # checkpoints in runs/x/{last,best}
    Trainer.resume("runs/x", train_examples, dev_examples, epochs=8).fit()

Exactness of resume: the checkpoint written at the end of an epoch holds the weights, the
optimiser's slots and step count, the schedule, and the state of every random generator (the
trainer's shuffling and each layer's dropout) and the library that made the matrix products
(rnnkit.blas, and rnnkit.plan's choice of recurrent products; taken again on resume unless
RNNKIT_BLAS or RNNKIT_PRODUCTS say otherwise), so continuing from it
replays exactly what an uninterrupted run would have done on the same machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from . import blas, io
from .distributed import World, allreduce_gradients, merge_totals, share, world
from .optim import (
    CosineLR,
    LinearWarmup,
    ReduceLROnPlateau,
    StepLR,
    clip_grad_norm,
    clip_grad_value,
    global_norm,
    make_optimizer,
)
from .plan import RECURRENT, recurrent_products, set_recurrent_products

SCHEDULES = ("none", "step", "cosine", "warmup", "plateau")
#: A loss past both of these (absolute, and times the first epoch's) is a divergence.
DIVERGED_LOSS = 1e4
DIVERGED_FACTOR = 1e3
#: TrainConfig fields a resumed run may change; the others are the checkpoint's.
RESUMABLE = frozenset({"epochs", "max_minutes", "patience", "progress", "keep_checkpoints",
                       "on_nan", "checkpoint_every"})
#: The optimiser state slot that holds the weights' moving average (TrainConfig.ema).
EMA_SLOT = "ema"


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN or infinite."""


@dataclass
class TrainConfig:
    epochs: int = 10  # passes over the training data (the total, when resuming)
    batch_size: int = 32  # sequences per batch
    optimizer: str = "adam"  # sgd | adam | adamw | rmsprop | adagrad
    lr: float = 1e-3  # learning rate
    weight_decay: float = 0.0  # L2 (decoupled for adamw)
    momentum: float = 0.0  # for sgd and rmsprop
    clip_norm: float | None = 5.0  # clip the global gradient norm to this (None: off)
    clip_value: float | None = None  # clamp each gradient element to ±this (None: off)
    schedule: str = "none"  # none | step | cosine | warmup | plateau
    step_size: int = 1  # step: epochs between decays; plateau: epochs of patience
    gamma: float = 0.5  # step and plateau: the factor applied to lr
    warmup_steps: int = 100  # warmup schedule: batches to reach lr
    patience: int | None = None  # early stopping after this many epochs without improvement
    bucket: bool = True  # batch sequences of similar length together
    shuffle: bool = True  # shuffle the batches (False: in order, e.g. truncated BPTT windows)
    seed: int = 0  # shuffling seed
    on_nan: str = "stop"  # stop | skip: what a NaN/inf loss or gradient does
    progress: bool = True  # show a progress bar
    keep_checkpoints: int = 2  # step directories kept besides last and best
    max_minutes: float | None = None  # stop after the epoch that passes this wall time
    ema: float = 0.0  # evaluate and save a moving average of the weights with this decay
    checkpoint_every: int = 0  # also checkpoint every this many steps inside an epoch (0: off)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and "
                             f"{self.batch_size}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; expected one of {SCHEDULES}")
        if self.on_nan not in ("stop", "skip"):
            raise ValueError(f"on_nan must be 'stop' or 'skip', got {self.on_nan!r}")
        if isinstance(self.ema, bool) or not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be a decay in [0, 1), got {self.ema!r}")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 steps (0: off), got "
                             f"{self.checkpoint_every}")


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
            bucket: bool = True, shuffle: bool = True) -> list[np.ndarray]:
    """Index batches for one epoch. With ``bucket``, a random permutation is sorted by length
    (stable, so equal lengths stay shuffled), cut into batches of similar lengths, and the
    batch order shuffled; otherwise plain shuffled batches; with ``shuffle=False`` the examples
    in their order (the generator is not used)."""
    if not shuffle:
        order = np.arange(len(lengths))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    perm = rng.permutation(len(lengths))
    if bucket:
        perm = perm[np.argsort(lengths[perm], kind="stable")]
    chunks = [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    order = rng.permutation(len(chunks))
    return [chunks[i] for i in order]


def evaluate(model, data: list, batch_size: int = 64, in_order: bool = False,
             world: World | None = None) -> dict:
    """Metrics of ``model`` on ``data`` in eval mode: batches of similar lengths, or the
    examples in their order with ``in_order`` (a language model's consecutive windows); with
    a parallel ``world`` (rnnkit.distributed) each rank takes its share of every batch."""
    if not data:
        raise ValueError("cannot evaluate on an empty data set")
    w = world or World()
    if hasattr(model, "start_eval"):
        model.start_eval()
    order = (np.arange(len(data)) if in_order else
             np.argsort([model.example_length(e) for e in data], kind="stable"))
    totals: dict = {}
    for i in range(0, len(order), batch_size):
        batch = shard_batch(model, [data[j] for j in order[i:i + batch_size]], w)
        if batch is None:
            continue
        for k, v in model.evaluate(batch).items():
            totals[k] = totals.get(k, 0) + v
    return model.metrics(merge_totals(w.allgather(totals)))


def shard_batch(model, examples: list, w: World):
    """A rank's part of a batch, collated: examples r, r + K, … (a model with
    ``shard_rows``, a language model's one window: its rows r, r + K, …); the whole batch for
    one process; None when the rank's part is empty."""
    if not w.parallel:
        return model.collate(examples)
    if hasattr(model, "shard_rows"):
        return model.shard_rows(model.collate(examples), w.rank, w.size)
    part = share(examples, w)
    return model.collate(part) if part else None


class Trainer:
    """Trains a :mod:`rnnkit.models` model; see the module docstring."""

    def __init__(self, model, train_data: list, dev_data: list | None = None,
                 config: TrainConfig | None = None, run_dir: str | Path | None = None,
                 extra_config: dict | None = None,
                 dev_scores: Callable[[object], dict] | None = None):
        """``run_dir`` receives checkpoints, metrics.jsonl and curves.png; None: a new
        temporary directory (``trainer.run_dir``), for quick experiments. ``dev_scores(model)``
        gives further dev metrics after each epoch, beside :meth:`evaluate`'s (a translation's
        BLEU and chrF, which need its decoder and tokenisers); the model's primary metric may
        be one of them."""
        if not train_data:
            raise ValueError("the training data set is empty")
        if dev_data is not None and not dev_data:
            raise ValueError("the dev data set is empty")
        self.model, self.train_data, self.dev_data = model, train_data, dev_data
        self.dev_scores = dev_scores
        self.world = world()  # one process, or this rank of an mpiexec run (data-parallel)
        self.config = config or TrainConfig()
        if run_dir is None:
            import tempfile

            run_dir = tempfile.mkdtemp(prefix="rnnkit-run-")
        self.run_dir = Path(run_dir)
        self.extra_config = extra_config or {}
        c = self.config
        kwargs = {"lr": c.lr, "weight_decay": c.weight_decay}
        if c.optimizer in ("sgd", "rmsprop"):
            kwargs["momentum"] = c.momentum
        frozen = getattr(model, "frozen", set())
        self.trained = {k: p for k, p in model.params.items() if k not in frozen}
        self.trained_grads = {k: g for k, g in model.grads.items() if k not in frozen}
        self.optimizer = make_optimizer(c.optimizer, self.trained, self.trained_grads,
                                        **kwargs)
        if c.ema:  # the average lives beside the optimiser's slots: checkpoints carry it
            self.optimizer.state[EMA_SLOT] = {k: p.copy() for k, p in model.params.items()}
        self.schedule = {"none": lambda o: None, "step": lambda o: StepLR(o, c.step_size, c.gamma),
                         "cosine": lambda o: CosineLR(o, c.epochs),
                         "warmup": lambda o: LinearWarmup(o, c.warmup_steps),
                         "plateau": lambda o: ReduceLROnPlateau(o, c.gamma, c.step_size)}[
            c.schedule](self.optimizer)
        self.rng = np.random.default_rng(c.seed)
        self.lengths = np.array([model.example_length(e) for e in train_data])
        count = getattr(model, "example_tokens", model.example_length)
        self.tokens = np.array([count(e) for e in train_data])
        self.epoch = 0
        self.step = 0
        self.best: float | None = None
        self.best_epoch = 0
        self.skipped = 0
        #: where an unfinished epoch stands (its batch order's generator state, the next
        #: batch, the sums so far), saved by a checkpoint inside an epoch; None between epochs
        self.position: dict | None = None
        if c.checkpoint_every and hasattr(model, "start_epoch"):
            raise ValueError("checkpoint_every: a language model carries its state from "
                             "window to window, which a checkpoint does not hold yet")
        #: one record per finished epoch; saved in every checkpoint, so the log of a resumed
        #: run is whole even when a kill came between a checkpoint and the log write
        self.history: list[dict] = []

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything besides weights and optimiser a resume needs: epoch, step, best score,
        random generators, schedule and the per-epoch history (JSON-able).
        """
        return {"epoch": self.epoch, "step": self.step, "best": self.best,
                "best_epoch": self.best_epoch, "skipped": self.skipped,
                "rng": self.rng.bit_generator.state, "model_rng": self.model.rng_states(),
                "schedule": None if self.schedule is None else self.schedule.state_dict(),
                "blas": blas.blas(), "products": recurrent_products(),
                "history": self.history, "position": self.position}  # TrainConfig: config.json

    @classmethod
    def resume(cls, run_dir: str | Path, train_data: list, dev_data: list | None = None,
               dev_scores: Callable[[object], dict] | None = None, **overrides) -> Trainer:
        """Continue from ``run_dir/last``; ``overrides`` change TrainConfig fields (epochs…)."""
        run_dir = Path(run_dir)
        last = run_dir / "last"
        if not last.exists():
            raise ValueError(f"{run_dir}: no checkpoint to resume from (no 'last')")
        model, config = io.load_model(last)
        known = {f.name for f in fields(TrainConfig)}
        bad = set(overrides) - known
        if bad:
            raise ValueError(f"unknown training option(s) {sorted(bad)}")
        fixed = set(overrides) - RESUMABLE
        if fixed:  # the checkpoint's state decides them (the optimiser's lr, the batches …)
            raise ValueError(f"a resumed run keeps its {', '.join(sorted(fixed))}; only "
                             f"{', '.join(sorted(RESUMABLE))} may change")
        if not isinstance(config.get("train"), dict):
            raise ValueError(f"{last}/config.json: no training configuration ('train')")
        tc = TrainConfig(**{**config["train"], **overrides})
        extra = {k: v for k, v in config.items()
                 if k not in ("format_version", "rnnkit_version", "model_type", "model")}
        trainer = cls(model, train_data, dev_data, tc, run_dir, extra, dev_scores)
        state = io.load_training_state(last, trainer.optimizer)
        if tc.ema:  # 'last' holds the average as the model and the raw weights as the slot
            trainer._swap_average()
        trainer.epoch, trainer.step = state["epoch"], state["step"]
        trainer.best, trainer.best_epoch = state["best"], state["best_epoch"]
        trainer.skipped = state["skipped"]
        trainer.position = state.get("position")
        trainer.history = list(state.get("history", []))
        trainer.rng.bit_generator.state = state["rng"]
        model.set_rng_states(state["model_rng"])
        if state.get("blas") and "RNNKIT_BLAS" not in os.environ:
            try:  # "auto" measures per machine; the run keeps the products it started with
                blas.set_blas(state["blas"])
            except ImportError:  # MKL gone since: the run goes on, equal only to rounding
                pass
        if state.get("products") in RECURRENT and "RNNKIT_PRODUCTS" not in os.environ:
            try:
                set_recurrent_products(state["products"])
            except ImportError:  # numba gone since: likewise
                pass
        if trainer.schedule is not None and state["schedule"] is not None:
            trainer.schedule.load_state_dict(state["schedule"])
        return trainer

    def checkpoint(self, best: bool) -> Path:
        """Write a checkpoint of the current state, point ``last`` (and ``best``) at it, prune
        old ones; returns its directory.
        """
        path = self.run_dir / "checkpoints" / f"step-{self.step:08d}"
        if path.exists() and path.resolve() not in self._linked():
            # Written whole by a run killed before it pointed 'last' at it: this run redid
            # the same steps from the previous checkpoint, so replace it.
            shutil.rmtree(path)
        with self._averaged():  # the model a checkpoint holds is the one evaluated
            io.save_checkpoint(path, self.model, self.optimizer, self.state(),
                               {**self.extra_config, "train": asdict(self.config)})
        io.point(self.run_dir / "last", path)
        if best:
            io.point(self.run_dir / "best", path)
        self._prune()
        return path

    def _linked(self) -> set[Path]:
        return {(self.run_dir / name).resolve() for name in ("last", "best")
                if (self.run_dir / name).exists()}

    def _prune(self) -> None:
        keep = self._linked()
        dirs = sorted((self.run_dir / "checkpoints").glob("step-*"))
        extra = [d for d in dirs if d.resolve() not in keep]
        for d in extra[: max(len(extra) - self.config.keep_checkpoints, 0)]:
            shutil.rmtree(d, ignore_errors=True)

    # ------------------------------------------------------------------ loop
    def evaluate(self, data: list, batch_size: int | None = None) -> dict:
        """Metrics of the model on ``data`` (eval mode; no gradients), with ``ema`` of the
        averaged weights; under mpiexec each rank evaluates its share of every batch and the
        totals are summed."""
        with self._averaged():
            return evaluate(self.model, data, batch_size or self.config.batch_size,
                            in_order=not self.config.shuffle, world=self.world)

    def _batch(self, examples: list):
        """This rank's part of a batch of examples, collated (None when it holds none)."""
        return shard_batch(self.model, examples, self.world)

    # Polyak averaging (Polyak & Juditsky 1992), as an exponential moving average: after each
    # step w̄ ← d w̄ + (1 − d) w, with d = min(ema, (1 + step) / (10 + step)) so that the first
    # steps' weights (the random start) fade quickly. Dev evaluation, model selection and
    # checkpoints see w̄; training goes on from w.
    def _update_average(self) -> None:
        d = min(self.config.ema, (1 + self.step) / (10 + self.step))
        for name, p in self.model.params.items():
            avg = self.optimizer.state[EMA_SLOT][name]
            avg *= d
            avg += (1 - d) * p

    def _swap_average(self) -> None:
        for name, p in self.model.params.items():
            avg = self.optimizer.state[EMA_SLOT][name]
            raw = p.copy()
            p[...] = avg
            avg[...] = raw

    @contextmanager
    def _averaged(self):
        """The averaged weights in the model inside the block (nothing without ``ema``)."""
        if not self.config.ema:
            yield
            return
        self._swap_average()
        try:
            yield
        finally:
            self._swap_average()

    def fit(self) -> list[dict]:
        """Train until ``config.epochs`` (or early stopping); returns the per-epoch records.
        The run directory is locked meanwhile: a second writer is refused (io.run_lock).
        Under mpiexec every rank calls it; rank 0 alone writes (rnnkit.distributed)."""
        with io.run_lock(self.run_dir) if self.writer else nullcontext():
            return self._fit()

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files (rank 0, or the only process)."""
        return self.world.rank == 0

    def _fit(self) -> list[dict]:
        problem = None
        if self.writer:
            try:
                self._prepare_run_dir()
            except ValueError as exc:
                problem = str(exc)
        problem = self.world.bcast(problem)  # every rank stops, not rank 0 alone
        if problem is not None:
            raise ValueError(problem)
        return self._loop()

    def _prepare_run_dir(self) -> None:
        if self.epoch == 0 and (self.run_dir / "last").exists():
            raise ValueError(f"{self.run_dir} already holds a training run; continue it with "
                             "rnnkit train ... --resume (in Python, Trainer.resume), or train "
                             "into another directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        ckpts = self.run_dir / "checkpoints"
        if ckpts.is_symlink() or (ckpts.exists() and ckpts.resolve().parent
                                  != self.run_dir.resolve()):
            # Pruning deletes old checkpoints: never anything outside the run directory.
            raise ValueError(f"{ckpts} is a link to {ckpts.resolve()}; a run keeps its "
                             "checkpoints inside its own directory")
        for tmp in (self.run_dir / "checkpoints").glob(".*.tmp-*"):  # left by a killed write
            shutil.rmtree(tmp, ignore_errors=True)
        for tmp in self.run_dir.glob(".*.tmp-*"):  # a link a killed swap never put in place,
            if tmp.is_symlink() or tmp.is_file():  # a log or plot a killed write left
                tmp.unlink()

    def _loop(self) -> list[dict]:
        from tqdm import tqdm

        c, W = self.config, self.world
        history = self.history
        metric_name, higher = self.model.primary_metric
        if metric_name != "loss" and self.dev_data is not None and self.dev_scores is None \
                and metric_name not in self.evaluate(self.dev_data[:1]):
            raise ValueError(f"the model is selected on dev {metric_name}, which its "
                             "evaluation does not give: pass dev_scores")
        t_start = time.perf_counter()
        while self.epoch < c.epochs:
            self.model.train()
            position, self.position = self.position, None
            if position is not None:  # resumed inside an epoch: its batches, from the next
                self.rng.bit_generator.state = position["plan_rng"]
            plan_rng = self.rng.bit_generator.state
            plan = batches(self.lengths, c.batch_size, self.rng, c.bucket, c.shuffle)
            if hasattr(self.model, "start_epoch"):  # e.g. reset a carried state
                self.model.start_epoch()
            loss_sum = count = tokens = 0
            norm_max = 0.0
            first = 0
            if position is not None:
                first = position["next"]
                loss_sum, count = position["loss_sum"], position["count"]
                tokens, norm_max = position["tokens"], position["norm_max"]
            t0 = time.perf_counter()
            bar = tqdm(plan[first:], desc=f"epoch {self.epoch + 1}/{c.epochs}",
                       disable=not (c.progress and self.writer), leave=False, unit="batch")
            for k, idx in enumerate(bar, first + 1):
                if c.checkpoint_every and self.step and self.step % c.checkpoint_every == 0 \
                        and k > first + 1 and self.writer:
                    # Inside the epoch: where it stands, so that a resume goes on from here.
                    self.position = {"plan_rng": plan_rng, "next": k - 1,
                                     "loss_sum": loss_sum, "count": count, "tokens": tokens,
                                     "norm_max": norm_max}
                    self.checkpoint(best=False)
                    self.position = None
                batch = self._batch([self.train_data[i] for i in idx])
                self.model.zero_grad()
                # A diverging step overflows: the checks below report it as such, once.
                with np.errstate(over="ignore", invalid="ignore"):
                    loss, n = self.model.forward_backward(batch) if batch is not None \
                        else (0.0, 0)
                    # every rank's share of the batch: the global batch's mean gradient
                    loss, n = allreduce_gradients(self.trained_grads, loss, n, W)
                self.step += 1
                norm = self._clip()
                norm_max = max(norm_max, norm) if math.isfinite(norm) else math.inf
                if not (math.isfinite(loss) and math.isfinite(norm)):
                    self._non_finite(loss, norm)
                    continue
                self.optimizer.step()
                if c.ema:
                    self._update_average()
                if c.schedule == "warmup":
                    self.schedule.step()
                loss_sum, count = loss_sum + loss, count + n
                tokens += int(self.tokens[idx].sum())
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / max(count, 1):.4f}", tok_s=f"{rate:,.0f}")
            bar.close()
            self.epoch += 1
            record = {"epoch": self.epoch, "step": self.step,
                      "train_loss": loss_sum / max(count, 1), "lr": self.optimizer.lr,
                      "grad_norm_max": norm_max,
                      "seconds": round(time.perf_counter() - t0, 3),
                      "tokens_per_s": round(tokens / max(time.perf_counter() - t0, 1e-9), 1)}
            if self.dev_data is not None:
                record.update({f"dev_{k}": v for k, v in self.evaluate(self.dev_data).items()})
                if self.dev_scores is not None:  # rank 0 scores (e.g. decodes), all hear it
                    scores = None
                    if self.writer:
                        with self._averaged(), self.model.evaluating():
                            scores = self.dev_scores(self.model)
                    record.update({f"dev_{k}": v for k, v in W.bcast(scores).items()})
            self._check_diverged(record, history)
            score = record.get(f"dev_{metric_name}", record["train_loss"] if not higher else None)
            improved = score is not None and (
                self.best is None or (score > self.best if higher else score < self.best))
            if improved:
                self.best, self.best_epoch = score, self.epoch
            if c.schedule in ("step", "cosine"):
                self.schedule.step()
            elif c.schedule == "plateau":
                self.schedule.step(record.get("dev_loss", record["train_loss"]))
            history.append(record)
            if self.writer:
                self.checkpoint(best=improved)
                self._log(history)
            if c.progress and self.writer:
                shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items()
                                  if isinstance(v, float))
                print(f"epoch {self.epoch}: {shown}", flush=True)
            # rank 0's clock decides for all: ranks that stopped apart would wait forever
            if c.max_minutes is not None and W.bcast(time.perf_counter() - t_start
                                                     > 60 * c.max_minutes):
                if c.progress and self.writer:
                    print(f"time budget of {c.max_minutes} minutes reached after epoch "
                          f"{self.epoch}")
                break
            if c.patience is not None and self.epoch - self.best_epoch >= c.patience:
                if c.progress and self.writer:
                    print(f"early stopping: no improvement of {metric_name} for {c.patience} "
                          f"epochs (best {self.best:.4g} at epoch {self.best_epoch})")
                break
        return history

    def _clip(self) -> float:
        c, grads = self.config, self.trained_grads
        if c.clip_norm is not None:
            norm = clip_grad_norm(grads, c.clip_norm)
        else:
            norm = global_norm(grads)
        if c.clip_value is not None:
            clip_grad_value(grads, c.clip_value)
        return norm

    def _check_diverged(self, record: dict, history: list[dict]) -> None:
        """A loss that stays finite but explodes (SGD at lr 1e30: dev loss 1.5e30) is a
        divergence too: past DIVERGED_FACTOR × the first epoch's training loss and past
        DIVERGED_LOSS, the epoch is not checkpointed and training stops."""
        first = (history[0] if history else record)["train_loss"]
        limit = max(DIVERGED_LOSS, DIVERGED_FACTOR * abs(first))
        for key in ("train_loss", "dev_loss"):
            value = record.get(key)
            if value is not None and not (abs(value) <= limit):
                last = self.run_dir / "last"
                kept = (f"; the last good checkpoint {last.resolve()} is intact"
                        if last.exists() else "")
                raise TrainingDiverged(f"{key} {value:.3g} at epoch {self.epoch} (step "
                                       f"{self.step}), above {limit:.3g}{kept}")

    def _non_finite(self, loss: float, norm: float) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {norm}"
        where = f"step {self.step} (epoch {self.epoch + 1})"
        if self.config.on_nan == "skip":
            self.skipped += 1
            self.model.zero_grad()
            return
        last = self.run_dir / "last"
        kept = f"; the last good checkpoint {last.resolve()} is intact" if last.exists() else ""
        raise TrainingDiverged(f"non-finite {what} at {where}{kept}")

    # ------------------------------------------------------------------ logs
    def _log(self, history: list[dict]) -> None:
        path = self.run_dir / "metrics.jsonl"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        with open(tmp, "w") as f:  # rewritten whole: a resumed run drops epochs it redoes
            for r in history:
                f.write(json.dumps(r) + "\n")
        os.replace(tmp, path)  # atomically: a kill leaves the old log or the new one
        plot_history(history, self.run_dir / "curves.png")


def plot_history(history: list[dict], path: str | Path) -> None:
    """Loss curves (train, dev) and dev metrics per epoch, as a PNG."""
    import gc

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    metrics = sorted({k for r in history for k in r if k.startswith("dev_") and k != "dev_loss"})
    # A Figure without pyplot: no global figure registry, nothing kept between epochs.
    fig = Figure(figsize=(10 if metrics else 5, 3.5))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [r["train_loss"] for r in history], marker="o", label="train")
    if any("dev_loss" in r for r in history):
        ax.plot(epochs, [r.get("dev_loss") for r in history], marker="o", label="dev")
    for a in axes[0]:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if metrics:
        ax = axes[0][1]
        for k in metrics:
            ax.plot(epochs, [r.get(k) for r in history], marker="o", label=k[4:])
        ax.set_xlabel("epoch")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).stem}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
    del fig, axes, ax
    gc.collect()  # a figure is a web of reference cycles: ~3 MB an epoch until collected
