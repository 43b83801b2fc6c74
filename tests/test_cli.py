from __future__ import annotations

import subprocess
import sys

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


def test_cli_demo_runs(capsys):
    assert main(["demo", "--steps", "4", "--length", "6", "--hidden", "5", "--cell", "gru"]) == 0
    out = capsys.readouterr().out
    assert "GRU (hidden 5)" in out and "step     4" in out


def test_cli_rejects_unknown_option():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--cell", "transformer"])
    assert exc.value.code == 2


def test_python_dash_m():
    proc = subprocess.run([sys.executable, "-m", "rnnkit", "--help"], capture_output=True,
                          text=True, check=True)
    assert "demo" in proc.stdout
