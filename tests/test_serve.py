"""rnnkit serve: the endpoints, dynamic batching (numbers equal to each instance alone), bad
requests, keys, metrics, streaming; and a real server process on a loopback port (uvicorn),
drained by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from rnnkit import blas
from rnnkit.losses import log_softmax

pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from rnnkit.pipeline import Task, train  # noqa: E402
from rnnkit.serve import ServeOptions, create_app, load_models  # noqa: E402

from .helpers import write_task_files  # noqa: E402

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 30
SENTENCES = ["a fine small cat", "a bad dog", "the cat sat", "dog ran away", "cat",
             "the small dog sat on a fine cat", "bad", "a cat and a dog ran"]


def _needs_invariance():
    if not blas.batch_invariant_available():
        pytest.skip("batch-invariant products need the numba engine")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    f = write_task_files(root, TEXT)
    small = dict(hidden=5, embedding_dim=4, epochs=1, progress=False)
    train("lm", f["lm"], root / "lm", layers=2, batch_size=2, bptt=16, dropout=0.5, **small)
    train("classify", f["classify"], root / "cls", layers=2, **small)
    train("classify", f["classify"], root / "mean", pooling="mean", cell="gru", **small)
    train("tag", f["tag"], root / "tag", char_dim=3, char_hidden=2, crf=True,
          **small)
    train("translate", f["translate"], root / "mt", cell="gru", attention="dot", **small)
    return root


@pytest.mark.parametrize("name", ["cls", "mean", "tag", "mt"])
def test_a_lines_numbers_do_not_depend_on_its_batch(runs, name):
    _needs_invariance()
    task = Task.load(runs / name)
    lines = SENTENCES * 3
    alone = [task.records([x])[0] for x in lines]
    for size in (2, 5, 24):
        assert task.records(lines, batch_size=size) == alone  # every float, bit for bit
    assert task.predict(lines) == [r["output"] for r in alone]


def test_records_hold_the_fields_of_each_task(runs):
    cls = Task.load(runs / "cls").records(["a fine cat"])[0]
    assert cls["label"] == cls["output"] and set(cls["probabilities"]) == {"neg", "pos"}
    assert sum(cls["probabilities"].values()) == pytest.approx(1.0)
    tag = Task.load(runs / "tag").records(["The cat sat", ""])
    assert tag[0]["tokens"] == ["The", "cat", "sat"] and len(tag[0]["tags"]) == 3
    pairs = zip(tag[0]["tokens"], tag[0]["tags"], strict=True)
    assert tag[0]["output"] == " ".join(f"{w}/{t}" for w, t in pairs)
    assert tag[1] == {"output": "", "tokens": [], "tags": []}
    mt = Task.load(runs / "mt")
    rec = mt.records(["the cat"])[0]
    assert rec["translation"] == rec["output"] == mt.translate(["the cat"])[0]
    # the score, teacher-forced, is the sum of what each greedy step gave its token
    m = mt.model
    src = mt.vocab.encode(mt.tokenizer("the cat"))
    ids = m.greedy([src], 2 * len(src) + 10)[0]
    with m.evaluating():
        enc, mask, state = m._start([src])
        total, token = 0.0, np.array([m.BOS])
        for y in ids + [m.EOS]:
            logits, state, _ = m._step(token, state, enc, mask)
            total += float(log_softmax(m._decodable(logits[:, 0].astype(np.float64)))[0, y])
            token = np.array([y])
    assert rec["score"] == pytest.approx(total, rel=1e-5) and rec["score"] < 0


def _app(runs, **kw):
    models = load_models([str(runs / n) for n in ("cls", "tag", "mt", "lm")])
    return create_app(models, ServeOptions(**kw))


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_endpoints_answer_as_documented(runs):
    async def go():
        async with await _client(_app(runs)) as c:
            assert (await c.get("/healthz")).json() == {"status": "ok",
                                                        "models": ["cls", "tag", "mt", "lm"]}
            listed = (await c.get("/v1/models")).json()["models"]
            assert [m["name"] for m in listed] == ["cls", "tag", "mt", "lm"]
            one = (await c.get("/v1/models/cls")).json()
            assert one["task"] == "classify" and one["labels"] == ["neg", "pos"]
            assert one["cell"] == "lstm" and one["sizes"]["hidden_size"] == 5 and one["ready"]
            r = await c.post("/v1/models/cls:predict", json={"instances": SENTENCES})
            task = Task.load(runs / "cls")
            alone = [task.records([x])[0] for x in SENTENCES]
            assert r.status_code == 200
            assert r.json()["predictions"] == json.loads(json.dumps(alone))
            r = await c.post("/v1/models/tag:predict", json={"instances": ["The cat sat"]})
            assert r.json()["predictions"][0]["output"] == \
                Task.load(runs / "tag").predict(["The cat sat"])[0]
            schema = (await c.get("/openapi.json")).json()
            assert schema["openapi"].startswith("3.")
            assert "/v1/models/{name}:predict" in schema["paths"]
            metrics = (await c.get("/metrics")).text
            assert 'rnnkit_requests_total{code="200",endpoint="/v1/models/{name}:predict"} 2.0' \
                in metrics
            assert "rnnkit_batch_size_bucket" in metrics
    asyncio.run(go())


@pytest.mark.parametrize("path,body,status,words", [
    ("/v1/models/nope:predict", {"instances": ["x"]}, 404, "no model 'nope'"),
    ("/v1/models/cls:predict", b"{not json", 400, "not JSON"),
    ("/v1/models/cls:predict", [1, 2], 400, "JSON object"),
    ("/v1/models/cls:predict", {"instances": "text"}, 400, "non-empty list"),
    ("/v1/models/cls:predict", {"instances": []}, 400, "non-empty list"),
    ("/v1/models/cls:predict", {"instances": ["ok", 3]}, 400, "instance 1 is int"),
    ("/v1/models/cls:predict", {"instances": ["x" * 101]}, 400, "instance 0 has 101"),
    ("/v1/models/cls:predict", {"instances": ["a\nb"]}, 400, "line break"),
    ("/v1/models/cls:predict", {"instances": ["a"], "top": 1}, 400, "unknown field(s) top"),
    ("/v1/models/cls:predict", {"instances": ["a" * 100] * 30}, 413, "--max-body"),
    ("/v1/models/lm:predict", {"instances": ["a"]}, 400, "language model"),
    ("/v1/models/cls:generate", {"prompt": "a"}, 400, "classify model"),
    ("/v1/models/lm:generate", {"prompt": ""}, 400, "non-empty"),
    ("/v1/models/lm:generate", {"prompt": "a", "max_tokens": 1.5}, 400, "an integer"),
    ("/v1/models/lm:generate", {"prompt": "a", "max_tokens": 10**6}, 400, "max_tokens"),
    ("/v1/models/lm:generate", {"prompt": "a", "temperature": 0}, 400, "temperature"),
    ("/v1/models/lm:generate", {"prompt": "a", "stream": "yes"}, 400, "true or false"),
    ("/nowhere", {}, 404, "Not Found"),
])
def test_bad_requests_get_an_error_and_the_server_goes_on(runs, path, body, status, words):
    async def go():
        async with await _client(_app(runs, max_length=100, max_body=2000)) as c:
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = await c.post(path, content=content)
            assert r.status_code == status and words in r.json()["error"]
            ok = await c.post("/v1/models/cls:predict", json={"instances": ["a cat"]})
            assert ok.status_code == 200
            metrics = (await c.get("/metrics")).text
            assert f'rnnkit_errors_total{{code="{status}"' in metrics
    asyncio.run(go())


def test_an_api_key_is_required_when_set(runs):
    async def go():
        async with await _client(_app(runs, api_key="s3cret")) as c:
            assert (await c.get("/healthz")).status_code == 200  # probes need no key
            r = await c.get("/v1/models")
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            bad = await c.get("/v1/models", headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and "API key" in bad.json()["error"]
            good = await c.get("/v1/models", headers={"Authorization": "Bearer s3cret"})
            assert good.status_code == 200
    asyncio.run(go())


def test_a_request_over_the_timeout_is_answered_504(runs):
    async def go():
        async with await _client(_app(runs, timeout=0.0)) as c:
            r = await c.post("/v1/models/cls:predict", json={"instances": ["a cat"]})
            assert r.status_code == 504 and "--timeout" in r.json()["error"]
    asyncio.run(go())


def test_generation_streams_the_same_text_as_it_returns(runs):
    task = Task.load(runs / "lm")
    expected = task.generate("First", 40, 0.9, 5, seed=3)

    async def go():
        async with await _client(_app(runs)) as c:
            body = {"prompt": "First", "max_tokens": 40, "temperature": 0.9, "top_k": 5,
                    "seed": 3}
            r = await c.post("/v1/models/lm:generate", json=body)
            assert r.json() == {"output": expected, "text": expected[len("First"):],
                                "unknown": []}
            r = await c.post("/v1/models/lm:generate", json={**body, "stream": True})
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [json.loads(line[len("data: "):]) for line in r.text.split("\n\n")
                      if line]
            assert len(events) == 41 and events[-1]["done"]
            assert "".join(e["text"] for e in events[:-1]) == expected[len("First"):]
            assert events[-1]["output"] == expected
            nucleus = {"prompt": "火First", "max_tokens": 30, "top_p": 0.8, "seed": 3}
            r = await c.post("/v1/models/lm:generate", json=nucleus)
            with pytest.warns(UserWarning, match="never saw"):
                alone = task.generate("火First", 30, seed=3, top_p=0.8)
            assert r.json() == {"output": alone, "text": alone[len("火First"):],
                                "unknown": ["火"]}
            r = await c.post("/v1/models/lm:generate", json={**nucleus, "top_p": 1.5})
            assert r.status_code == 400 and "top_p must be in (0, 1]" in r.json()["error"]
    asyncio.run(go())


def test_interleaved_samplers_each_give_their_text_alone(runs):
    task = Task.load(runs / "lm")
    task.model.train()  # dropout on: a sampler left in training mode would differ
    alone = [task.generate("First", 30, seed=s) for s in (1, 2)]
    a, b = task.sample("First", seed=1), task.sample("First", seed=2)
    pieces = [(next(a), next(b)) for _ in range(30)]
    assert ["First" + "".join(p[k] for p in pieces) for k in (0, 1)] == alone
    assert task.model.training


def test_requests_that_arrive_together_run_as_one_batch(runs):
    _needs_invariance()
    app = _app(runs, max_batch=16, max_delay_ms=50)
    lines = [f"{a} {b}" for a in SENTENCES for b in ("cat", "dog", "ran")]
    alone = Task.load(runs / "cls").records(lines)

    async def go():
        async with await _client(app) as c:
            answers = await asyncio.gather(*(
                c.post("/v1/models/cls:predict", json={"instances": [x]}) for x in lines))
            metrics = (await c.get("/metrics")).text
        return [a.json()["predictions"][0] for a in answers], metrics
    got, metrics = asyncio.run(go())
    assert got == json.loads(json.dumps(alone))
    count = next(line for line in metrics.splitlines()
                 if line.startswith('rnnkit_batch_size_count{model="cls"}'))
    assert float(count.split()[-1]) < len(lines)  # fewer batches than requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_real_server_answers_and_drains_on_sigterm(runs):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "serve", str(runs / "cls"),
                             str(runs / "lm"), "--port", str(port), "--name", "c"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RNNKIT_API_KEY": "k"})
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer k"}
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/v1/models", headers=headers).json()["models"][1]["name"] \
            == "lm"
        r = httpx.post(f"{url}/v1/models/c:predict", json={"instances": SENTENCES},
                       headers=headers)
        assert [p["output"] for p in r.json()["predictions"]] == \
            Task.load(runs / "cls").predict(SENTENCES)

        lines = [f"{a} {b}" for a in SENTENCES for b in ("cat", "dog", "ran")]
        alone = json.loads(json.dumps([Task.load(runs / "cls").records([x])[0] for x in lines]))

        async def together():
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
                answers = await asyncio.gather(*(c.post("/v1/models/c:predict", json={
                    "instances": [x]}) for x in lines))
                bad = await c.post("/v1/models/c:predict", content=b"[")
                unknown = await c.post("/v1/models/x:predict", json={"instances": ["a"]})
                big = await c.post("/v1/models/c:predict", content=b" " * (2 << 20))
            return [a.json()["predictions"][0] for a in answers], bad, unknown, big
        got, bad, unknown, big = asyncio.run(together())
        assert got == alone
        assert (bad.status_code, unknown.status_code, big.status_code) == (400, 404, 413)
        assert "error" in bad.json() and "error" in unknown.json() and "error" in big.json()

        async def in_flight():  # SIGTERM once the first token of a stream has arrived
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
                body = {"prompt": "F", "max_tokens": 2000, "seed": 1, "stream": True}
                async with c.stream("POST", "/v1/models/lm:generate", json=body) as r:
                    events = r.aiter_lines()
                    first = await anext(events)
                    proc.send_signal(signal.SIGTERM)
                    signalled = time.monotonic()
                    rest = [line async for line in events]
            return [first] + rest, signalled
        lines, signalled = asyncio.run(in_flight())
        events = [json.loads(x[len("data: "):]) for x in lines if x]
        # uvicorn, having drained, ends by the signal it caught, as its parent expects
        assert proc.wait(timeout=10) == -signal.SIGTERM and time.monotonic() - signalled < 10
        assert len(events) == 2001 and events[-1]["done"]  # the stream in flight finished
        assert events[-1]["output"] == Task.load(runs / "lm").generate("F", 2000, seed=1)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz")
    finally:
        proc.kill()
        proc.wait()
    out = proc.stdout.read()
    assert "Traceback" not in proc.stderr.read()
    assert f"serving c (classify) at http://127.0.0.1:{port}/v1/models/c" in out
