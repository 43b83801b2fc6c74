"""Data-parallel training over MPI (rnnkit.distributed): real mpiexec processes (mpi4py and
the mpich wheel), K ranks against one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnkit.distributed import LAUNCHER_VARS

HERE = Path(__file__).resolve().parent
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which(
    "mpiexec")


def _env() -> dict:
    """This environment without an MPI launcher's variables (the test runs outside one)."""
    return {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}


def _mpi(k: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    pytest.importorskip("mpi4py")
    if MPIEXEC is None:
        pytest.skip("no mpiexec (pip install mpich)")
    return subprocess.run([MPIEXEC, "-n", str(k), *args], capture_output=True, text=True,
                          timeout=timeout, env=_env())


def _one(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=240, env=_env())


def test_rnnkit_never_touches_mpi_outside_mpiexec():
    code = ("import sys, rnnkit, rnnkit.cli, rnnkit.train; from rnnkit.distributed import world;"
            " w = world(); print(w.rank, w.size, 'mpi4py' in sys.modules)")
    out = _one(sys.executable, "-c", code)
    assert out.returncode == 0 and out.stdout.split() == ["0", "1", "False"]


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("k1")
    done = _one(sys.executable, str(HERE / "mpi_train.py"), str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_two_ranks_train_the_same_model_as_one_process(alone, tmp_path):
    """Every model type, float64, two epochs of batches of 7 split over 2 ranks (3 ranks: the
    command-line test): the weights after every step are the one-process run's to 1e-10
    (measured: ~5e-16; 3 ranks the same)."""
    done = _mpi(2, sys.executable, str(HERE / "mpi_train.py"), str(tmp_path))
    assert done.returncode == 0, done.stderr
    a, b = np.load(alone / "weights.npz"), np.load(tmp_path / "weights.npz")
    assert sorted(a.files) == sorted(b.files)
    assert {name.split("/")[0] for name in a.files} == {"classify", "tag", "lm", "translate",
                                                        "regress", "steps"}
    for name in a.files:
        scale = max(np.abs(a[name]).max(), 1e-300)
        assert np.abs(a[name] - b[name]).max() / scale < 1e-10, name
    ma = json.loads((alone / "metrics.json").read_text())
    mb = json.loads((tmp_path / "metrics.json").read_text())
    for model, metrics in ma.items():  # dev evaluation split over the ranks, then summed
        for key, value in metrics.items():
            assert mb[model][key] == pytest.approx(value, rel=1e-12), (model, key)
    # one writer: only rank 0's checkpoints and logs, and each run's files once
    assert sorted(p.name for p in (tmp_path / "classify").iterdir()) == sorted(
        p.name for p in (alone / "classify").iterdir())


def _data(tmp_path) -> Path:
    data = tmp_path / "d.tsv"
    rng = np.random.default_rng(0)
    words = ["good", "fine", "great", "bad", "awful", "poor", "the", "a", "film", "day"]
    rows = []
    for _ in range(90):
        ws = list(rng.choice(words, rng.integers(2, 7)))
        rows.append(f"{' '.join(ws)}\t{int(sum(w in words[:3] for w in ws) > 1)}\n")
    data.write_text("".join(rows))
    return data


def test_the_command_line_under_mpiexec(tmp_path):
    """train (rank 0 reports and writes), resume with another K, predict in input order."""
    data = _data(tmp_path)
    common = ["--hidden", "6", "--embedding-dim", "4", "--dropout", "0", "--batch-size", "8",
              "--quiet"]
    rnnkit = [sys.executable, "-m", "rnnkit"]
    one = _one(*rnnkit, "train", "classify", "--train", str(data), "--out",
               str(tmp_path / "one"), "--epochs", "2", *common)
    assert one.returncode == 0, one.stderr
    first = _mpi(2, *rnnkit, "train", "classify", "--train", str(data), "--out",
                 str(tmp_path / "par"), "--epochs", "1", *common)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("trained classify") == 1  # rank 0 alone speaks
    again = _mpi(3, *rnnkit, "train", "classify", "--train", str(data), "--out",
                 str(tmp_path / "par"), "--epochs", "2", "--resume", "--quiet")
    assert again.returncode == 0, again.stderr
    from rnnkit.io import load_model

    a, _ = load_model(tmp_path / "one" / "last")
    b, _ = load_model(tmp_path / "par" / "last")
    for name, p in a.params.items():  # float32: the same to rounding
        np.testing.assert_allclose(b.params[name], p, rtol=1e-4, atol=1e-5, err_msg=name)
    lines = tmp_path / "in.txt"
    lines.write_text("".join(f"{r.split(chr(9))[0]}\n" for r in data.read_text().splitlines()
                             [:25]))
    alone = _one(*rnnkit, "predict", str(tmp_path / "par"), str(lines))
    split = _mpi(3, *rnnkit, "predict", str(tmp_path / "par"), str(lines))
    assert split.returncode == 0, split.stderr
    assert split.stdout == alone.stdout and len(split.stdout.splitlines()) == 25
    evaluated = _mpi(2, *rnnkit, "eval", str(tmp_path / "par"), "--data", str(data))
    assert evaluated.returncode == 0 and evaluated.stdout.count("accuracy:") == 1  # rank 0


def test_a_rank_that_fails_ends_every_rank_with_its_message(tmp_path):
    data = _data(tmp_path)
    run = tmp_path / "run"
    done = _one(sys.executable, "-m", "rnnkit", "train", "classify", "--train", str(data),
                "--out", str(run), "--epochs", "1", "--hidden", "4", "--embedding-dim", "4",
                "--quiet")
    assert done.returncode == 0, done.stderr
    script = tmp_path / "fail.py"
    script.write_text(
        "import sys\n"
        "from rnnkit import pipeline\n"
        "from rnnkit.cli import main\n"
        "from rnnkit.distributed import world\n"
        "real = pipeline.Task.predict\n"
        "def predict(self, lines, *a, **k):\n"
        "    if world().rank == 1:\n"
        "        raise ValueError('in.txt:7: a line this rank cannot read')\n"
        "    return real(self, lines, *a, **k)\n"
        "pipeline.Task.predict = predict\n"
        "sys.exit(main(sys.argv[1:]))\n")
    lines = tmp_path / "in.txt"
    lines.write_text("good film\n" * 10)
    failed = _mpi(2, sys.executable, str(script), "predict", str(run), str(lines), timeout=60)
    assert failed.returncode != 0  # and it returned at all: rank 0 did not wait forever
    assert "rnnkit predict: error (rank 1 of 2): in.txt:7: a line this rank cannot read" \
        in failed.stderr


def test_an_exception_nothing_catches_ends_every_rank(tmp_path):
    script = tmp_path / "crash.py"
    script.write_text(
        "import numpy as np\n"
        "from rnnkit.distributed import world\n"
        "w = world()\n"
        "if w.rank == 1:\n"
        "    raise RuntimeError('out of something on rank 1')\n"
        "w.allreduce_(np.ones(3))  # rank 0 waits here for a rank that is gone\n")
    crashed = _mpi(2, sys.executable, str(script), timeout=60)
    assert crashed.returncode != 0 and "out of something on rank 1" in crashed.stderr


def test_a_killed_rank_ends_the_run_and_leaves_a_checkpoint_to_resume(tmp_path):
    """SIGKILL of rank 1 mid-training: mpiexec ends every rank, 'last' loads, and the run
    resumes under another number of ranks."""
    import signal
    import time

    pytest.importorskip("mpi4py")
    if MPIEXEC is None or not Path("/proc").is_dir():
        pytest.skip("needs mpiexec and /proc (to find rank 1)")
    data = _data(tmp_path)
    data.write_text(data.read_text() * 30)
    run = tmp_path / "run"
    argv = [MPIEXEC, "-n", "2", sys.executable, "-m", "rnnkit", "train", "classify", "--train",
            str(data), "--out", str(run), "--epochs", "200", "--hidden", "8",
            "--embedding-dim", "4", "--quiet"]
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / "last").exists(), "no checkpoint came"
        victims = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                   and _environ(p).get("PMI_RANK") == "1"
                   and str(data) in _cmdline(p)]
        assert victims, "rank 1 not found"
        os.kill(int(victims[0].name), signal.SIGKILL)
        assert proc.wait(timeout=30) != 0  # every rank ended, none left waiting
    finally:
        proc.kill()
        proc.communicate()
    from rnnkit.io import load_model

    load_model(run / "last")  # atomic writes: whatever rank 0 was doing, 'last' is whole
    epochs = json.loads((run / "last" / "trainer.json").read_text())["epoch"] + 1
    done = _mpi(3, sys.executable, "-m", "rnnkit", "train", "classify", "--train", str(data),
                "--out", str(run), "--epochs", str(epochs), "--resume", "--quiet")
    assert done.returncode == 0, done.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == epochs


def _environ(proc: Path) -> dict:
    try:
        raw = (proc / "environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(x.decode(errors="replace").split("=", 1) for x in raw if b"=" in x)


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
