"""rnnkit/io.py with untrusted checkpoints: truncated files, tampered safetensors headers,
configs that do not match their weights or ask for enormous models, unknown versions, pickles.
Each is a clear ValueError naming the file; nothing is executed and nothing big allocated."""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import tracemalloc

import numpy as np
import pytest

from rnnkit import io
from rnnkit.models import ClassifierConfig, SequenceClassifier


@pytest.fixture
def ckpt(tmp_path):
    model = SequenceClassifier(ClassifierConfig(vocab_size=30, num_classes=3, embedding_dim=5,
                                                hidden_size=4, cell="gru"))
    return io.save_checkpoint(tmp_path / "ckpt", model), model


def load_fails(directory, message):
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=message):
            io.load_model(directory)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000_000, f"loading a bad checkpoint allocated {peak} bytes"


def test_a_good_checkpoint_loads(ckpt):
    path, model = ckpt
    loaded, config = io.load_model(path)
    assert config["model_type"] == "SequenceClassifier"
    for name, p in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], p)


@pytest.mark.parametrize("keep", [0, 7, 100, -10])
def test_truncated_weights(ckpt, keep):
    path, _ = ckpt
    f = path / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    load_fails(path, r"model.safetensors: not a readable safetensors file")


def header(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def write_header(path, hdr, body):
    raw = json.dumps(hdr).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + body)


def test_tampered_headers(ckpt):
    path, _ = ckpt
    f = path / "model.safetensors"
    hdr, body = header(f)
    name = "head.weight"
    cases = [
        ({**hdr, name: {**hdr[name], "shape": [10**9, 10**9]}}, body),  # enormous tensor
        ({**hdr, name: {**hdr[name], "data_offsets": [0, 10**12]}}, body),  # past the end
        ({**hdr, name: {**hdr[name], "dtype": "F64"}}, body),  # sizes no longer add up
        (hdr, body + b"\0" * 16),  # trailing bytes
    ]
    for h, b in cases:
        write_header(f, h, b)
        load_fails(path, "model.safetensors: not a readable safetensors file")
    f.write_bytes(struct.pack("<Q", 2**62) + b"{}")  # a header length of 4 EiB
    load_fails(path, "not a readable safetensors file")


def test_shapes_that_do_not_match_the_config(ckpt, tmp_path):
    path, _ = ckpt
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"]["hidden_size"] = 3  # fewer parameters than the file: builds, then mismatches
    (path / "config.json").write_text(json.dumps(cfg))
    load_fails(path, r"model.safetensors: rnn.weight_ih_l0 is float32\[12, 5\], the model "
               r"expects float32\[9, 5\]")


@pytest.mark.parametrize("field,value", [("hidden_size", 10**6), ("vocab_size", 10**9),
                                         ("num_layers", 10**5), ("embedding_dim", 10**7)])
def test_a_config_asking_for_a_huge_model_allocates_nothing(ckpt, field, value):
    path, _ = ckpt
    cfg = json.loads((path / "config.json").read_text())
    cfg["model"][field] = value
    (path / "config.json").write_text(json.dumps(cfg))
    load_fails(path, r"config.json: does not describe a valid SequenceClassifier .*more than "
               r"the weights file holds")


@pytest.mark.parametrize("change,message", [
    (lambda c: c.update(format_version=99), "format version 99; this rnnkit reads version 1"),
    (lambda c: c.update(model_type="Evil"), "unknown model type 'Evil'"),
    (lambda c: c["model"].update(cell="transformer"), "unknown cell 'transformer'"),
    (lambda c: c["model"].update(hidden_size="4"), "does not describe a valid"),
    (lambda c: c["model"].update(__class__="os.system"), r"unknown .* field\(s\)"),
    (lambda c: c.update(model=[1, 2]), "'model' must be an object"),
])
def test_bad_configs(ckpt, change, message):
    path, _ = ckpt
    cfg = json.loads((path / "config.json").read_text())
    change(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    load_fails(path, message)


def test_config_not_json_or_not_an_object(ckpt):
    path, _ = ckpt
    (path / "config.json").write_text('{"format_version": 1, "model_type"')
    load_fails(path, "config.json: not valid JSON")
    (path / "config.json").write_text("[1, 2, 3]")
    load_fails(path, "config.json: expected a JSON object, got list")
    (path / "config.json").write_bytes(b"\xff\xfe{}")
    load_fails(path, "config.json: not valid JSON")


def test_a_pickle_is_never_unpickled(ckpt, tmp_path):
    """A weights file holding a pickle whose loading would run code: an error, and the code
    did not run."""
    path, _ = ckpt
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (path / "model.safetensors").write_bytes(pickle.dumps(Evil()))
    load_fails(path, "not a readable safetensors file")
    assert not marker.exists()


def test_missing_and_extra_files(ckpt):
    path, _ = ckpt
    shutil.copy(path / "model.safetensors", path / "spare")
    (path / "model.safetensors").unlink()
    load_fails(path, "model.safetensors: missing")
    (path / "config.json").unlink()
    load_fails(path, "no config.json — not an rnnkit checkpoint")


def test_huge_json_is_refused_unread(ckpt, monkeypatch):
    path, _ = ckpt
    monkeypatch.setattr(io, "MAX_JSON_BYTES", 100)
    load_fails(path, r"config.json: \d+ bytes, more than any rnnkit writes")


def test_one_writer_per_run_directory(tmp_path):
    """A second process is refused with the holder's pid while the first holds the run; the
    lock goes with the process (SIGKILL included); the holder itself may re-enter."""
    import signal
    import subprocess
    import sys
    import time

    from rnnkit.io import run_lock

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from rnnkit.io import run_lock\n"
        f"with run_lock({str(run)!r}):\n    print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match=rf"another rnnkit process \(pid {holder.pid}\)"):
            with run_lock(run):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    time.sleep(0.05)
    with run_lock(run):
        with run_lock(run):  # re-entrant in one process
            (run / "x").write_text("ok")
    assert (run / "x").read_text() == "ok"
    empty = tmp_path / "never-written"
    with run_lock(empty):
        pass
    assert not empty.exists()  # a lock alone leaves no directory behind


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
    from rnnkit.cli import main

    root = tmp_path_factory.mktemp("tagrun")
    data = root / "t.txt"
    data.write_text("\n".join(["the/DET cat/NOUN", "dogs/NOUN run/VERB"] * 10) + "\n")
    assert main(["train", "tag", "--train", str(data), "--out", str(root / "run"),
                 "--epochs", "1", "--hidden", "4", "--embedding-dim", "3", "--quiet"]) == 0
    return root / "run" / "best"


@pytest.mark.parametrize("change, message", [
    (lambda c: c.pop("vocab"), "'vocab' must be a list of strings"),
    (lambda c: c.pop("tokenizer"), "'tokenizer' must be an object"),
    (lambda c: c.update(labels=c["labels"][:-1]), r"labels for \d+ outputs"),
    (lambda c: c.update(labels="NOUN"), "'labels' must be a list of strings"),
    (lambda c: c.update(vocab=c["vocab"][:-1]), "the model's embedding"),
    (lambda c: c["tokenizer"].update(pattern="(a|a)+$"), "does not supply a regular expression"),
    (lambda c: c["tokenizer"].update(kind="regex"), "unknown tokenizer kind"),
    (lambda c: c["data"].update(encoding=["utf-8"]), "data option 'encoding' has the wrong"),
    (lambda c: c.update(chars=["x"]), "'chars' has 1 entries"),
])
def test_every_task_field_of_a_checkpoint_is_checked(tagger_run, tmp_path, change, message):
    import json
    import shutil

    from rnnkit.pipeline import Task

    run = tmp_path / "ckpt"
    shutil.copytree(tagger_run.resolve(), run)
    cfg = json.loads((run / "config.json").read_text())
    change(cfg)
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=message):
        Task.load(run)


def test_deep_json_and_nonfinite_weights_are_refused(tagger_run, tmp_path):
    import shutil

    from safetensors.numpy import load_file, save_file

    from rnnkit.pipeline import Task

    run = tmp_path / "deep"
    shutil.copytree(tagger_run.resolve(), run)
    (run / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply|not valid JSON"):
        Task.load(run)
    run = tmp_path / "nan"
    shutil.copytree(tagger_run.resolve(), run)
    arrays = load_file(run / "model.safetensors")
    arrays["head.bias"][0] = np.nan
    save_file(arrays, run / "model.safetensors")
    with pytest.raises(ValueError, match="head.bias holds NaN or infinite values"):
        Task.load(run)


def test_a_failed_write_names_its_file(tmp_path, monkeypatch):
    import builtins
    import errno

    from rnnkit.io import write_atomic

    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(builtins, "open", lambda p, mode="r", *a, **k: Full(real_open(
        p, mode, *a, **k)) if "w" in mode else real_open(p, mode, *a, **k))
    with pytest.raises(OSError, match=r"cannot write .*summary.json.*No space left on device"):
        write_atomic(tmp_path / "summary.json", b"{}")


def test_average_the_last_checkpoints_of_a_run(tmp_path, capsys):
    from rnnkit.cli import main
    from rnnkit.io import average_checkpoints, load_model
    from rnnkit.pipeline import Task

    data = tmp_path / "d.tsv"
    data.write_text("".join(f"{'good fine' if i % 2 else 'bad awful'} {i}\t{i % 2}\n"
                            for i in range(60)))
    run = tmp_path / "run"
    assert main(["train", "classify", "--train", str(data), "--out", str(run), "--epochs",
                 "4", "--hidden", "6", "--embedding-dim", "4", "--keep-checkpoints", "5",
                 "--quiet"]) == 0
    steps = sorted((run / "checkpoints").glob("step-*"))
    assert len(steps) == 4
    assert main(["average", str(run), "--last", "3"]) == 0
    assert "averaged 3 checkpoints" in capsys.readouterr().out
    averaged, config = load_model(run / "averaged")
    models = [load_model(s)[0] for s in steps[-3:]]
    for name, p in averaged.params.items():
        mean = sum(m.params[name].astype(np.float64) for m in models) / 3
        np.testing.assert_array_equal(p, mean.astype(p.dtype))
    assert config["averaged"] == [str(s) for s in steps[-3:]]
    assert Task.load(run / "averaged").predict(["good fine 3"]) in (["0"], ["1"])
    assert main(["eval", str(run / "averaged"), "--data", str(data), "--json"]) == 0
    with pytest.raises(SystemExit):
        main(["average", str(run), "--last", "9"])
    assert "--last 9: " in capsys.readouterr().err
    other = tmp_path / "other"
    main(["train", "classify", "--train", str(data), "--out", str(other), "--epochs", "1",
          "--hidden", "8", "--embedding-dim", "4", "--quiet"])
    with pytest.raises(ValueError, match="holds another model"):
        average_checkpoints([steps[-1], *sorted((other / "checkpoints").glob("step-*"))],
                            tmp_path / "x")
