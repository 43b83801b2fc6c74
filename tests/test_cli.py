from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.demo import run_demo


def test_demo_loss_falls():
    lines = []
    history = run_demo(steps=600, length=10, hidden=16, print_every=200, out=lines.append)
    assert len(history) == 3 and len(lines) == 5
    assert history[0] > 0.05  # still near the 0.167 baseline at first
    assert history[-1] < 0.01  # then well below it
    assert lines[-1].endswith("solved (solved means below 10%)")


def test_cli_demo_adding_runs(capsys):
    assert main(["demo", "--families", "adding", "--steps", "4", "--length", "6", "--hidden",
                 "5", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "GRU (hidden 5)" in out and "step     4" in out


def test_cli_demo_families_quick(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out_dir)]) == 0
    text = capsys.readouterr().out
    for family in ("classify", "tag", "translate", "lm"):
        assert (out_dir / family / "run" / "best" / "model.safetensors").is_file()
        assert (out_dir / family / "run" / "curves.png").is_file()
        assert f"\n{family} " in text
    assert "accuracy" in text and "bleu" in text and "bits_per_char" in text
    assert main(["demo", "--quick", "--out", str(out_dir)]) == 0  # its own output: replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):  # someone else's directory: refused, nothing touched
        main(["demo", "--quick", "--out", str(other)])
    assert (other / "notes.txt").read_text() == "keep me"


def test_cli_rejects_unknown_option():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--cell", "transformer"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--families", "vision"])
    assert exc.value.code == 2


def test_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "--help"], capture_output=True,
                          text=True, check=True)
    assert "demo" in proc.stdout


def test_gradflow_prints_plots_and_vanishes(tmp_path, capsys):
    import json

    out = tmp_path / "flow.png"
    assert main(["gradflow", "--cell", "rnn,lstm", "--length", "40", "--hidden", "16",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "rnn" in text and "lstm" in text and f"plot: {out}" in text
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert main(["gradflow", "--cell", "rnn", "--length", "40", "--json"]) == 0
    curve = json.loads(capsys.readouterr().out)["rnn"]
    assert len(curve) == 40 and curve[-1] > 1e6 * curve[0]  # it vanishes going back


@pytest.mark.parametrize("task", ["adding", "copy"])
def test_train_long_range_smoke(task, tmp_path, capsys):
    import json

    assert main(["train", task, "--length", "5", "--hidden", "8", "--sequences", "200",
                 "--cell", "gru", "--chrono", "25", "--out", str(tmp_path / "run"),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["task"] == task and summary["length"] == 5 and summary["sequences"] == 200
    assert summary["chrono"] == 25
    saved = json.loads((tmp_path / "run" / "last" / "config.json").read_text())["model"]
    assert saved["chrono"] == 25 and saved["cell"] == "gru"
    assert summary["test_loss"] > 0 and summary["baseline"] > 0
    assert (tmp_path / "run" / "last" / "model.safetensors").is_file()


def test_exploding_rnn_diverges_without_clipping(capsys, tmp_path):
    args = ["train", "adding", "--length", "20", "--cell", "rnn", "--init", "orthogonal",
            "--gain", "1.5", "--optimizer", "sgd", "--lr", "0.1", "--hidden", "64",
            "--sequences", "3000", "--quiet"]
    assert main(args + ["--clip", "none", "--out", str(tmp_path / "a")]) == 0
    assert "diverged: non-finite" in capsys.readouterr().out
    assert main(args + ["--clip", "1", "--out", str(tmp_path / "b")]) == 0
    assert "diverged" not in capsys.readouterr().out
    with pytest.raises(SystemExit):  # the same directory again: refused, nothing overwritten
        main(args + ["--clip", "1", "--out", str(tmp_path / "b")])
    assert "already holds a training run" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "adding", "--length", "1"], "the sequence length must be at least 2, got 1"),
    (["train", "copy", "--length", "5", "--cell", "elman"], "invalid choice: 'elman'"),
    (["gradflow", "--init", "xavier"], "invalid choice: 'xavier'"),
    (["gradflow", "--cell", "rnn,foo"], "unknown cell 'foo'"),
    (["train", "adding", "--length", "5", "--clip", "-1"], "clip must be positive"),
    (["train", "adding", "--length", "5", "--hidden", "8", "--proj-size", "9"],
     "proj_size must be an integer in [0, hidden_size=8), got 9"),
    (["train", "copy", "--length", "5", "--cell", "rnn", "--chrono", "25"],
     "the simple RNN has no gate"),
])
def test_cli_bad_input(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_no_traceback_for_an_infinite_lr_or_too_little_memory(tmp_path, capsys, monkeypatch):
    data = tmp_path / "d.tsv"
    data.write_text("".join(f"text {i}\t{i % 2}\n" for i in range(30)))
    with pytest.raises(SystemExit) as exc:
        main(["train", "classify", "--train", str(data), "--out", str(tmp_path / "r"),
              "--lr", "inf", "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "lr must be a positive finite number, got inf" in err and "Traceback" not in err
    import rnnkit.pipeline

    def no_memory(*a, **k):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(rnnkit.pipeline, "SequenceClassifier", no_memory)
    with pytest.raises(SystemExit) as exc:
        main(["train", "classify", "--train", str(data), "--out", str(tmp_path / "r"),
              "--hidden", "100000", "--quiet"])
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit train: error: not enough memory (Unable to allocate")
    assert len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_resume_from_the_command_line_ends_as_an_uninterrupted_run(tmp_path, capsys):
    """Three epochs at once, and one then two more with --resume: the same weights, bit for
    bit, and a summary with test metrics; other data is refused, and so is a setting the
    checkpoint decides."""
    import json

    from rnnkit import io

    rows = [f"{'good' if i % 3 else 'bad'} thing number {i}\t{int(i % 3 > 0)}" for i in range(90)]
    data = tmp_path / "d.tsv"
    data.write_text("\n".join(rows) + "\n")
    common = ["train", "classify", "--train", str(data), "--hidden", "6", "--embedding-dim",
              "5", "--quiet", "--lr", "0.01"]
    assert main(common + ["--out", str(tmp_path / "full"), "--epochs", "3"]) == 0
    assert main(common + ["--out", str(tmp_path / "part"), "--epochs", "1"]) == 0
    with pytest.raises(SystemExit):  # without --resume: refused, pointing at --resume
        main(common + ["--out", str(tmp_path / "part"), "--epochs", "3"])
    assert "--resume" in capsys.readouterr().err
    assert main(common + ["--out", str(tmp_path / "part"), "--epochs", "3", "--resume"]) == 0
    full, _ = io.load_model(tmp_path / "full" / "last")
    part, _ = io.load_model(tmp_path / "part" / "last")
    for name, p in full.params.items():
        assert np.array_equal(p, part.params[name]), name
    summary = json.loads((tmp_path / "part" / "summary.json").read_text())
    assert summary["epochs"] == 3 and "accuracy" in summary["test"]
    capsys.readouterr()
    data.write_text("\n".join(rows[:-1]) + "\n")
    with pytest.raises(SystemExit):
        main(common + ["--out", str(tmp_path / "part"), "--epochs", "4", "--resume"])
    assert "differs from the train file the run was trained on" in capsys.readouterr().err
    from rnnkit.train import Trainer

    with pytest.raises(ValueError, match="a resumed run keeps its lr"):
        Trainer.resume(tmp_path / "part", [([4, 5], 1)], lr=1e38)
