"""Data-parallel training on this machine: one process with 2 BLAS threads against 2 MPI ranks
with 1 thread each (mpiexec, rnnkit.distributed), one epoch of SMS spam (character BiLSTM 128,
max pooling) and of UD English-EWT UPOS (2 BiLSTM layers of 256 + character BiLSTM), and the
time of one Allreduce of each model's gradient (the flat float64 buffer a step sums).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/distributed.py

Results: benchmarks/results/distributed.json and a table; docs/distributed.md turns them into
a scaling estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import append_result, blas_kernel, cpu_name  # noqa: E402
from serve_load import SHARED, SIZES  # noqa: E402

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or "mpiexec"


def _data(work: Path) -> dict:
    rows = [line.split("\t", 1) for line in (SHARED / "sms_spam_collection" / "SMSSpamCollection")
            .read_text(encoding="utf-8").splitlines() if "\t" in line]
    (work / "sms.tsv").write_text("".join(f"{t}\t{lab}\n" for lab, t in rows), encoding="utf-8")
    ud = SHARED / "ud_english_ewt"
    return {"classify": ["--train", str(work / "sms.tsv"), *SIZES["classify"]],
            "tag": ["--train", str(ud / "en_ewt-ud-train.conllu"), "--dev",
                    str(ud / "en_ewt-ud-dev.conllu"), *SIZES["tag"]]}


def _env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE",
                                                             "OPENBLAS_L2_SIZE")}
    env.update(OPENBLAS_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def epoch_seconds(task: str, args: list[str], ranks: int, threads: int, work: Path) -> float:
    out = work / f"{task}-{ranks}x{threads}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "rnnkit", "train", task, *args, "--out", str(out), "--epochs",
           "1", "--quiet", "--dropout", "0.3"]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    subprocess.run(cmd, check=True, env=_env(threads), capture_output=True)
    from rnnkit.pipeline import Task

    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    size = sum(p.size for p in Task.load(out).model.params.values())
    shutil.rmtree(out, ignore_errors=True)
    return record["seconds"], record["step"], int(size)


ALLREDUCE = """
import json, sys, time
import numpy as np
from rnnkit.distributed import world
w = world()
out = {}
for name, n in json.loads(sys.argv[1]).items():
    buf = np.ones(n + 2)
    times = []
    for _ in range(30):
        w.comm.Barrier()
        t = time.perf_counter()
        w.allreduce_(buf)
        times.append(time.perf_counter() - t)
    out[name] = float(np.median(times[5:]))
if w.rank == 0:
    print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="epochs per setting (median)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rnnkit-dist-"))
    data = _data(work)
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "blas": blas_kernel(),
               "when": time.strftime("%Y-%m-%d %H:%M"), "tasks": {}}
    print(f"{results['cpu']}, {results['cores']} cores; BLAS {results['blas']}")
    for task, task_args in data.items():
        row = {}
        for ranks, threads in ((1, 2), (2, 1), (1, 1)):
            runs = [epoch_seconds(task, task_args, ranks, threads, work)
                    for _ in range(args.repeats)]
            row[f"{ranks}x{threads}"] = float(np.median([s for s, _, _ in runs]))
            row["steps"], row["parameters"] = runs[0][1], runs[0][2]
        results["tasks"][task] = row
        print(task, json.dumps(row), flush=True)
    sizes = {t: r["parameters"] for t, r in results["tasks"].items()}
    done = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-c", ALLREDUCE,
                           json.dumps(sizes)], check=True, env=_env(1), capture_output=True,
                          text=True)
    for task, seconds in json.loads(done.stdout).items():
        results["tasks"][task]["allreduce_s"] = seconds
    for task, r in results["tasks"].items():
        print(f"{task:8s} epoch: 1 process × 2 threads {r['1x2']:.1f} s, 2 ranks × 1 thread "
              f"{r['2x1']:.1f} s ({r['1x2'] / r['2x1']:.2f}×), 1 × 1 {r['1x1']:.1f} s; "
              f"{r['steps']} steps; {r['parameters']:,} parameters, Allreduce "
              f"{r['allreduce_s'] * 1e3:.2f} ms a step on 2 ranks (shared memory)")
    append_result("distributed", results)


if __name__ == "__main__":
    main()
