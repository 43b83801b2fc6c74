"""The trainer: bucketing, exact resume, checkpoints, NaN handling, early stopping, logs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit import blas, io
from rnnkit.models import ClassifierConfig, SequenceClassifier
from rnnkit.train import TrainConfig, Trainer, TrainingDiverged, batches

from .helpers import misalign


def toy_data(n, seed):
    """Label 1 when token 7 occurs in the sequence: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        seq = rng.integers(1, 10, rng.integers(3, 13)).tolist()
        data.append((seq, int(7 in seq)))
    return data


TRAIN, DEV = toy_data(240, 0), toy_data(60, 1)


def make_model(**kw):
    cfg = dict(vocab_size=10, num_classes=2, embedding_dim=8, hidden_size=12, cell="gru",
               dropout=0.2, seed=3)
    cfg.update(kw)
    return SequenceClassifier(ClassifierConfig(**cfg))


def config(**kw):
    base = dict(epochs=4, batch_size=16, lr=0.01, progress=False, seed=5)
    base.update(kw)
    return TrainConfig(**base)


def test_batches_bucket_by_length_and_cover_everything():
    lengths = np.random.default_rng(0).integers(1, 100, 1000)
    a = batches(lengths, 32, np.random.default_rng(1))
    b = batches(lengths, 32, np.random.default_rng(1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert sorted(np.concatenate(a).tolist()) == list(range(1000))
    plain = batches(lengths, 32, np.random.default_rng(1), bucket=False)
    spread = np.mean([np.ptp(lengths[i]) for i in a])
    assert spread < 0.2 * np.mean([np.ptp(lengths[i]) for i in plain])


def test_training_learns_and_resume_is_bit_exact(tmp_path):
    full = Trainer(make_model(), TRAIN, DEV, config(), tmp_path / "full")
    history = full.fit()
    assert len(history) == 4
    assert history[-1]["dev_accuracy"] > 0.8
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    half = Trainer(make_model(), TRAIN, DEV, config(epochs=2), tmp_path / "half")
    half.fit()
    resumed = Trainer.resume(tmp_path / "half", TRAIN, DEV, epochs=4)
    resumed.fit()
    for name, p in full.model.params.items():
        assert np.array_equal(p, resumed.model.params[name]), name
    logs = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("full", "half")]
    assert [r["train_loss"] for r in logs[0]] == [r["train_loss"] for r in logs[1]]


def test_moving_average_is_what_is_evaluated_and_saved_and_resumes_exactly(tmp_path):
    """With ema the dev metrics, 'best' and 'last' hold w̄ (w̄ ← d w̄ + (1 − d) w after each
    step, d = min(ema, (1 + step)/(10 + step))), training goes on from w, and a resumed run
    ends bit-identical to an uninterrupted one."""
    c = config(epochs=3, ema=0.9)
    full = Trainer(make_model(), TRAIN, DEV, c, tmp_path / "full")
    raw = {k: p.copy() for k, p in full.model.params.items()}
    avg = {k: p.copy() for k, p in raw.items()}
    step = full.optimizer.step

    def step_and_follow():  # the average written out independently, step by step
        step()
        d = min(0.9, (1 + full.step) / (10 + full.step))
        for k, p in full.model.params.items():
            avg[k] = d * avg[k] + (1 - d) * p
            raw[k] = p.copy()

    full.optimizer.step = step_and_follow
    history = full.fit()
    saved, _ = io.load_model(tmp_path / "full" / "last")
    for k, p in saved.params.items():
        np.testing.assert_allclose(p, avg[k], rtol=1e-5, atol=1e-6, err_msg=k)
        assert np.array_equal(full.model.params[k], raw[k]), k  # the model trains on w
        assert not np.allclose(p, raw[k])
    assert history[-1]["dev_loss"] == pytest.approx(
        Trainer(saved, TRAIN, DEV, config()).evaluate(DEV)["loss"], rel=1e-6)
    half = Trainer(make_model(), TRAIN, DEV, config(epochs=1, ema=0.9), tmp_path / "half")
    half.fit()
    resumed = Trainer.resume(tmp_path / "half", TRAIN, DEV, epochs=3)
    resumed.fit()
    for name, p in full.model.params.items():
        assert np.array_equal(p, resumed.model.params[name]), name
    again, _ = io.load_model(tmp_path / "half" / "last")
    for name, p in saved.params.items():
        assert np.array_equal(p, again.params[name]), name
    with pytest.raises(ValueError, match="ema must be a decay in"):
        config(ema=1.0)
    with pytest.raises(ValueError, match="checkpoint_every must be >= 0"):
        config(checkpoint_every=-1)


def test_resume_keeps_the_blas_the_run_started_with(tmp_path, monkeypatch):
    """"auto" picks MKL or NumPy's BLAS by a measurement; a resumed run takes the library of
    its checkpoint, so that it ends bit-identical to an uninterrupted one."""
    monkeypatch.delenv("RNNKIT_BLAS", raising=False)
    previous = blas.blas()
    try:
        blas.set_blas("numpy")
        Trainer(make_model(), TRAIN[:32], None, config(epochs=1), tmp_path / "run").fit()
        try:
            blas.set_blas("mkl")
        except ImportError:
            pytest.skip("MKL is not installed: one library only")
        Trainer.resume(tmp_path / "run", TRAIN[:32], None, epochs=2)
        assert blas.blas() == "numpy"
        monkeypatch.setenv("RNNKIT_BLAS", "mkl")  # asked for by name: the run follows
        blas.set_blas("mkl")
        Trainer.resume(tmp_path / "run", TRAIN[:32], None, epochs=2)
        assert blas.blas() == "mkl"
    finally:
        blas.set_blas(previous)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_training_does_not_depend_on_memory_alignment(tmp_path, monkeypatch, cell):
    """A resumed run lives in a new process, whose arrays lie at other addresses: two epochs
    with every NumPy work array at another offset from a 64-byte boundary give the same bits
    (test_crash.py checks the whole story across processes)."""
    params = []
    for shift in (0, 3, 7):
        misalign(monkeypatch, shift)
        trainer = Trainer(make_model(cell=cell), TRAIN[:96], None, config(epochs=2),
                          tmp_path / f"shift{shift}")
        trainer.fit()
        monkeypatch.undo()
        params.append(trainer.model.params)
    for other in params[1:]:
        for name, p in params[0].items():
            np.testing.assert_array_equal(other[name], p, err_msg=name)


def test_checkpoint_directory(tmp_path):
    trainer = Trainer(make_model(), TRAIN, DEV, config(epochs=2), tmp_path,
                      extra_config={"vocab": ["<pad>", "a"]})
    trainer.fit()
    last = tmp_path / "last"
    assert last.is_symlink() and (tmp_path / "best").is_symlink()
    assert {p.name for p in last.iterdir()} == {"model.safetensors", "config.json",
                                                "optimizer.safetensors", "trainer.json"}
    cfg = json.loads((last / "config.json").read_text())
    assert cfg["model_type"] == "SequenceClassifier" and cfg["vocab"] == ["<pad>", "a"]
    assert cfg["train"]["epochs"] == 2 and "rnnkit_version" in cfg
    model, _ = io.load_model(last)
    for name, p in trainer.model.params.items():
        assert np.array_equal(p, model.params[name])
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2]


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(make_model(), TRAIN, None, config(epochs=1), tmp_path)
    trainer.fit()
    good = {k: v.copy() for k, v in trainer.model.params.items()}
    trainer.model.params["head.weight"][0, 0] = np.nan
    trainer.config.epochs = 2
    with pytest.raises(TrainingDiverged, match=r"non-finite loss nan at step 16 \(epoch 2\); "
                                               r"the last good checkpoint .* is intact"):
        trainer.fit()
    model, _ = io.load_model(tmp_path / "last")
    for name, p in model.params.items():
        assert np.array_equal(p, good[name]), name


def test_nan_skip_leaves_weights_alone(tmp_path):
    trainer = Trainer(make_model(), TRAIN, None, config(epochs=1, on_nan="skip"), tmp_path)
    trainer.model.params["head.bias"][0] = np.inf
    before = {k: v.copy() for k, v in trainer.model.params.items()}
    trainer.fit()
    assert trainer.skipped == 15
    for name, p in trainer.model.params.items():
        assert np.array_equal(p, before[name]), name


def test_early_stopping(tmp_path):
    trainer = Trainer(make_model(), TRAIN, DEV, config(epochs=10, lr=1e-12, patience=2),
                      tmp_path)
    history = trainer.fit()
    assert len(history) == 3 and trainer.best_epoch == 1


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="the training data set is empty"):
        Trainer(make_model(), [], None, config(), tmp_path)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        config(schedule="linear")
    trainer = Trainer(make_model(), [([1, 2], 5)], None, config(epochs=1), tmp_path / "a")
    with pytest.raises(ValueError, match=r"target class 5 out of range \[0, 2\)"):
        trainer.fit()
    with pytest.raises(ValueError, match="no checkpoint to resume from"):
        Trainer.resume(tmp_path / "nothing", TRAIN)
    Trainer(make_model(), TRAIN, None, config(epochs=1), tmp_path / "b").fit()
    with pytest.raises(ValueError, match="already holds a training run; continue it with"):
        Trainer(make_model(), TRAIN, None, config(epochs=1), tmp_path / "b").fit()
    last = tmp_path / "b" / "last"
    with pytest.raises(ValueError, match="holds a SequenceClassifier, expected a Seq2Seq"):
        io.load_model(last, expected_type="Seq2Seq")
    other = make_model(hidden_size=7)
    with pytest.raises(ValueError, match=r"rnn.weight_ih_l0 is float32\[36, 8\], the model "
                                         r"expects float32\[21, 8\]"):
        io.load_weights(other, last)
    cfg = json.loads((last / "config.json").read_text())
    cfg["format_version"] = 99
    (last / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="checkpoint format version 99; this rnnkit reads "
                                         "version 1"):
        io.load_model(last)


def test_memory_stays_flat_over_a_long_run(tmp_path):
    """20k optimiser steps over 4 epochs (checkpoints, logs, curves between them): the resident
    memory after warm-up does not climb. benchmarks/reliability.py runs 100k. In a process of
    its own: in the test session's (1.3 GB, other tests' threads and freed blocks) the
    allocator's own bookkeeping moved the resident size by megabytes."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from reliability import long_run; print(json.dumps(long_run(20_000, 2_500, "
            "Path(sys.argv[2]), steps_per_epoch=5_000)))")
    done = subprocess.run([sys.executable, "-c", code, str(bench), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    samples = json.loads(done.stdout.strip().splitlines()[-1])
    assert [s["step"] for s in samples] == list(range(2_500, 20_001, 2_500))
    warm = samples[2]["rss_mb"]  # after the first epoch's end, which imports matplotlib
    assert samples[-1]["rss_mb"] - warm < 4.0, samples


def test_a_finite_explosion_is_a_divergence_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    """A loss that stays finite but explodes stops training with the epoch and the intact
    checkpoint named; from the command line a divergence (here SGD at lr 1e30 without
    clipping, which reaches NaN at step 2) exits with status 1 and one line."""
    trainer = Trainer(make_model(), TRAIN, DEV, config(epochs=2), tmp_path / "run")
    trainer.fit()
    first = {"train_loss": 0.7}
    trainer._check_diverged({"train_loss": 0.5, "dev_loss": 650.0}, [first])  # not yet
    with pytest.raises(TrainingDiverged, match=r"dev_loss 1\.5e\+30 at epoch 2 .*the last good "
                                               r"checkpoint .* is intact"):
        trainer._check_diverged({"train_loss": 3.0, "dev_loss": 1.5e30}, [first])
    from rnnkit.cli import main

    data = tmp_path / "d.tsv"
    data.write_text("".join(f"word{i % 7} other{i % 5}\t{i % 2}\n" for i in range(60)))
    with pytest.raises(SystemExit) as exc:
        main(["train", "classify", "--train", str(data), "--out", str(tmp_path / "r"),
              "--optimizer", "sgd", "--lr", "1e30", "--clip", "none", "--quiet",
              "--epochs", "3"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit train: training diverged: non-finite loss")
    assert len(err.splitlines()) == 1


def test_checkpoints_never_leave_the_run_directory_and_a_dangling_best_is_an_error(tmp_path):
    import os

    from rnnkit.pipeline import Task

    elsewhere = tmp_path / "precious"
    elsewhere.mkdir()
    (elsewhere / "step-00000001").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(elsewhere, run / "checkpoints")
    with pytest.raises(ValueError, match="a run keeps its checkpoints inside its own"):
        Trainer(make_model(), TRAIN[:32], None, config(epochs=1), run).fit()
    assert (elsewhere / "step-00000001").is_dir()
    good = tmp_path / "good"
    Trainer(make_model(), TRAIN[:32], DEV, config(epochs=1), good).fit()
    (good / "best").unlink()
    os.symlink("checkpoints/step-99999999", good / "best")
    with pytest.raises(ValueError, match="best points at checkpoints/step-99999999, which is "
                                         "missing"):
        Task.load(good)


def test_a_checkpoint_inside_an_epoch_resumes_bit_identical(tmp_path):
    """checkpoint_every: a run that dies after a checkpoint inside an epoch goes on from that
    batch, and ends equal, bit for bit, to a run never interrupted."""
    c = config(epochs=2, checkpoint_every=4)
    full = Trainer(make_model(), TRAIN, DEV, c, tmp_path / "full")
    full.fit()

    class Killed(Exception):
        pass

    died = Trainer(make_model(), TRAIN, DEV, c, tmp_path / "died")
    real = died.model.forward_backward

    def dies_at_step_22(batch):
        if died.step == 21:  # steps 1–21 done; the checkpoint after step 20 holds batch 21 on
            raise Killed
        return real(batch)

    died.model.forward_backward = dies_at_step_22
    with pytest.raises(Killed):
        died.fit()
    state = json.loads((tmp_path / "died" / "last" / "trainer.json").read_text())
    assert state["step"] == 20 and state["position"]["next"] == 20 - 15  # 15 batches an epoch
    resumed = Trainer.resume(tmp_path / "died", TRAIN, DEV)
    resumed.fit()
    for name, p in full.model.params.items():
        assert np.array_equal(p, resumed.model.params[name]), name
    logs = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
            for d in ("full", "died")]
    assert [r["train_loss"] for r in logs[0]] == [r["train_loss"] for r in logs[1]]


def test_dev_scores_join_the_record_and_can_pick_the_best_epoch(tmp_path):
    from rnnkit.models import Seq2Seq, Seq2SeqConfig

    data = [([1 + i % 5, 2], [4 + i % 3]) for i in range(40)]
    model = Seq2Seq(Seq2SeqConfig(src_vocab_size=8, tgt_vocab_size=8, embedding_dim=4,
                                  hidden_size=6, select_metric="bleu", seed=1))
    with pytest.raises(ValueError, match="selected on dev bleu.*pass dev_scores"):
        Trainer(model, data, data, config(epochs=1), tmp_path / "a").fit()
    made = iter([10.0, 30.0, 20.0, 5.0])  # a made-up BLEU per epoch: epoch 2 is the best

    def scores(m):
        assert m is model and not m.training
        return {"bleu": next(made), "chrf": 1.0}
    trainer = Trainer(model, data, data, config(epochs=4), tmp_path / "b", dev_scores=scores)
    history = trainer.fit()
    assert [r["dev_bleu"] for r in history] == [10.0, 30.0, 20.0, 5.0]
    assert trainer.best_epoch == 2 and "dev_loss" in history[0]
    assert (tmp_path / "b" / "best").resolve() != (tmp_path / "b" / "last").resolve()
