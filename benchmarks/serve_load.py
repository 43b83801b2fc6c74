"""Load test of ``rnnkit serve`` on loopback: throughput and p50/p99 latency at 1, 8 and 64
concurrent clients (one instance per request), for a classifier and a tagger, against the same
models exported to ONNX and run by onnxruntime one request at a time behind the same server.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/serve_load.py

Trains the two models first when --cls / --tag are not given: SMS spam (characters) and UD
English-EWT UPOS (words and their characters), at the sizes of their quality runs
(benchmarks/quality.py), one epoch each (speed, not quality, is measured here).
Each level sends a fixed number of requests (--requests) or stops at --seconds, --repeats times
(medians reported), after a warm-up; every answer's
``output`` is compared with the line ``rnnkit predict RUN FILE`` prints for that text. The
server runs in a process of its own (uvicorn), the client here (aiohttp), on the same machine.
Results: benchmarks/results/serve.json and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_result, blas_kernel, cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"


#: The sizes of the quality runs (benchmarks/quality.py sms, ud-pos), trained one epoch.
SIZES = {"classify": ["--tokenizer", "char", "--hidden", "128", "--embedding-dim", "64",
                      "--pooling", "max"],
         "tag": ["--hidden", "256", "--layers", "2", "--embedding-dim", "100", "--char-dim", "30",
                 "--char-hidden", "50"]}


def prepare(work: Path) -> dict:
    """{task: (run directory, input lines)}: the two models, trained here unless given."""
    sms = [line.split("\t", 1) for line in
           (SHARED / "sms_spam_collection" / "SMSSpamCollection").read_text(
               encoding="utf-8").splitlines() if "\t" in line]
    rng = np.random.default_rng(0)
    rng.shuffle(sms)
    cut = len(sms) // 10
    (work / "sms-train.tsv").write_text("".join(f"{t}\t{lab}\n" for lab, t in sms[cut:]),
                                        encoding="utf-8")
    sms_lines = [t.replace("\r", " ") for _, t in sms[:cut]]
    from rnnkit.data import read_conllu

    ud = SHARED / "ud_english_ewt"
    tag_lines = [" ".join(toks) for toks, _ in read_conllu(ud / "en_ewt-ud-test.conllu",
                                                           "utf-8")]
    return {"classify": (work / "sms-train.tsv", sms_lines),
            "tag": (ud / "en_ewt-ud-train.conllu", tag_lines)}


def train_runs(work: Path, data: dict, given: dict) -> dict:
    runs = {}
    for task, (train, _) in data.items():
        if given.get(task):
            runs[task] = Path(given[task])
            continue
        out = work / f"{task}-run"
        args = ["rnnkit", "train", task, "--train", str(train), "--out", str(out), "--quiet",
                "--epochs", "1", *SIZES[task]]
        subprocess.run(args, check=True)
        runs[task] = out
    return runs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(runs: dict, engine: str, max_batch: int, log) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--child", engine, "--port", str(port),
           "--max-batch", str(max_batch), "--cls", str(runs["classify"]),
           "--tag", str(runs["tag"])]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(600):
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the {engine} server did not start")


async def load(url: str, model: str, lines: list[str], expected: list[str], clients: int,
               requests: int, seconds: float) -> dict:
    import aiohttp

    latencies, errors, wrong = [], 0, 0
    sent = 0
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector) as c:
        async def client(first: bool):
            nonlocal sent, errors, wrong
            while sent < requests and time.perf_counter() - start < seconds:
                i = sent % len(lines)
                sent += 1
                t0 = time.perf_counter()
                async with c.post(f"/v1/models/{model}:predict",
                                  json={"instances": [lines[i]]}) as r:
                    body = await r.json()
                latencies.append(time.perf_counter() - t0)
                if r.status != 200:
                    errors += 1
                elif body["predictions"][0]["output"] != expected[i]:
                    wrong += 1
        # every client opens its connection before the clock starts
        start, requests_ = time.perf_counter(), requests
        requests = clients
        await asyncio.gather(*(client(True) for _ in range(clients)))
        latencies.clear()
        requests, sent = requests_ + clients, clients
        start = time.perf_counter()
        await asyncio.gather(*(client(False) for _ in range(clients)))
        wall = time.perf_counter() - start
    lat = np.array(latencies) * 1e3
    return {"clients": clients, "requests": len(latencies), "seconds": wall,
            "throughput": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "errors": errors, "wrong": wrong}


def child(args) -> None:
    """A server: rnnkit's own engine with dynamic batching, or onnxruntime one request at a
    time behind the same app."""
    import uvicorn

    from rnnkit.serve import ServeOptions, create_app, load_models, warm

    models = load_models([args.cls, args.tag], ["classify", "tag"])
    if args.child == "onnxruntime":
        for name, task in models.items():
            task.model = OnnxModel(task.model, Path(tempfile.mkdtemp()) / f"{name}.onnx")
    warm(models)
    app = create_app(models, ServeOptions(max_batch=args.max_batch))
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


class OnnxModel:
    """An rnnkit model whose forward pass is its ONNX export run by onnxruntime (one thread):
    what Task.records calls (collate, predict_logits, predict) and the rest from the model."""

    def __init__(self, model, path: Path):
        import onnxruntime as ort

        from rnnkit.interop import export_onnx

        export_onnx(model, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.model = model
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])

    def __getattr__(self, name):
        return getattr(self.model, name)

    def _run(self, batch):
        from rnnkit.interop import onnx_feed

        return self.session.run(["logits"], onnx_feed(self.model, batch)[0])[0]

    def predict_logits(self, batch):
        return self._run(batch)

    def predict(self, batch):
        return self.model._decode(self._run(batch), batch[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cls", help="a classify run (default: trained here)")
    ap.add_argument("--tag", help="a tag run (default: trained here)")
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--requests", type=int, default=2000, help="per level (default: 2000)")
    ap.add_argument("--seconds", type=float, default=30.0, help="per level (default: 30)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per level, medians reported")
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--port", type=int)
    ap.add_argument("--child", choices=["rnnkit", "onnxruntime"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    work = Path(tempfile.mkdtemp(prefix="rnnkit-serve-"))
    data = prepare(work)
    runs = train_runs(work, data, {"classify": args.cls, "tag": args.tag})
    expected = {}
    for task, (_, lines) in data.items():
        (work / f"{task}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = subprocess.run(["rnnkit", "predict", str(runs[task]), str(work / f"{task}.txt")],
                             check=True, capture_output=True, text=True).stdout
        expected[task] = out.split("\n")[:len(lines)]
    clients = [int(c) for c in args.clients.split(",")]
    results = {"cpu": cpu_name(), "cores": os.cpu_count(), "blas": blas_kernel(),
               "when": time.strftime("%Y-%m-%d %H:%M"), "levels": []}
    print(f"{results['cpu']}, {results['cores']} cores; BLAS {results['blas']}")
    with open(work / "servers.log", "w") as log:
        for engine, max_batch in (("rnnkit", args.max_batch), ("onnxruntime", 1)):
            proc, url = start(runs, engine, max_batch, log)
            try:
                for task, (_, lines) in data.items():
                    asyncio.run(load(url, task, lines, expected[task], 8, 500, 10))  # warm-up
                    for c in clients:
                        tries = [asyncio.run(load(url, task, lines, expected[task], c,
                                                  args.requests, args.seconds))
                                 for _ in range(args.repeats)]
                        r = {k: float(np.median([t[k] for t in tries])) for k in
                             ("throughput", "p50_ms", "p99_ms", "seconds")}
                        r.update(clients=c, requests=sum(t["requests"] for t in tries),
                                 errors=sum(t["errors"] for t in tries),
                                 wrong=sum(t["wrong"] for t in tries), engine=engine,
                                 task=task, max_batch=max_batch, repeats=args.repeats)
                        results["levels"].append(r)
                        print(f"{engine:11s} {task:8s} {c:3d} clients: {r['throughput']:7.0f} "
                              f"req/s  p50 {r['p50_ms']:6.1f} ms  p99 {r['p99_ms']:6.1f} ms  "
                              f"errors {r['errors']}  ≠ predict {r['wrong']}  "
                              f"(medians of {args.repeats}, {r['requests']} requests)",
                              flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    by = {(r["engine"], r["task"], r["clients"]): r["throughput"] for r in results["levels"]}
    for task in data:
        lo, hi = min(clients), max(clients)
        print(f"{task}: rnnkit {hi} clients / 1 client: "
              f"{by['rnnkit', task, hi] / by['rnnkit', task, lo]:.2f}×; rnnkit / onnxruntime "
              f"at {hi} clients: {by['rnnkit', task, hi] / by['onnxruntime', task, hi]:.2f}×, "
              f"at {lo}: {by['rnnkit', task, lo] / by['onnxruntime', task, lo]:.2f}×")
    append_result("serve", results)


if __name__ == "__main__":
    main()
