"""``rnnkit serve``: trained runs behind HTTP (Starlette on uvicorn; ``pip install
"rnnkit[serve]"``), with the conventions of KServe's v1 protocol and text-generation servers.

    GET  /healthz                      200 once every model is loaded
    GET  /v1/models, /v1/models/NAME   name, task, labels, cell, sizes, ready
    POST /v1/models/NAME:predict       {"instances": [text, ...]} → {"predictions": [record]}
    POST /v1/models/NAME:generate      {"prompt", "max_tokens", "temperature", "top_k", "top_p",
                                        "seed", "stop_at_eos", "stream"} → {"output", "text",
                                        "unknown"} or server-sent events
    GET  /metrics                      Prometheus text: requests, errors, latency, batch sizes
    GET  /openapi.json                 the API as OpenAPI 3.1

A prediction record is rnnkit.pipeline.Task.records's: ``output`` is the line ``rnnkit predict``
prints for the text, beside its fields. Instances of requests that arrive together run as one
batch (rnnkit.batching) whose numbers equal each instance's alone (rnnkit.blas.batch_invariant;
without numba the batches hold one instance). Errors answer ``{"error": "..."}``: 400 bad
request, 401 missing key, 404 unknown model, 413 body over ``max_body``, 504 over ``timeout``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from . import blas

log = logging.getLogger("rnnkit.serve")

#: Where the API key may come from besides --api-key (so that it stays out of `ps`).
API_KEY_ENV = "RNNKIT_API_KEY"


@dataclass
class ServeOptions:
    max_batch: int = 64  # most instances in one batch
    max_delay_ms: float = 5.0  # longest a batch waits for requests still arriving
    max_body: int = 1 << 20  # bytes of one request body (413 above)
    max_length: int = 10_000  # characters of one instance or prompt (400 above)
    max_tokens: int = 10_000  # most tokens one generate request may ask for
    timeout: float = 30.0  # seconds before a request is answered 504
    beam_size: int = 1  # translation beam
    api_key: str | None = None  # bearer token every endpoint but /healthz requires


class HTTPError(Exception):
    """An answer other than 200: ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def load_models(runs: list[str], names: list[str] | None = None) -> dict:
    """{name: Task} of run directories; a name is the directory's unless ``names`` gives it."""
    from .pipeline import Task

    names = names or []
    if len(names) > len(runs):
        raise ValueError(f"{len(names)} --name for {len(runs)} run(s)")
    models = {}
    for i, run in enumerate(runs):
        name = names[i] if i < len(names) else Path(run).resolve().name
        if not name or "/" in name or ":" in name:
            raise ValueError(f"model name {name!r}: no '/' or ':' (give --name)")
        if name in models:
            raise ValueError(f"two models named {name!r}; give --name for each run")
        models[name] = Task.load(run)
    return models


def warm(models: dict) -> None:
    """Run each model once (compiled code loaded, weights packed), then move every object the
    process holds so far out of the garbage collector's reach (gc.freeze): a full collection
    otherwise walks numba's and the vocabularies' objects and stalls every request in flight."""
    import gc

    for task in models.values():
        if task.task == "lm":
            task.generate("a", 2, seed=0)
        else:
            task.records(["warm up"])
    gc.collect()
    gc.freeze()


def describe(name: str, task) -> dict:
    """What ``GET /v1/models/NAME`` answers."""
    c = task.model.config
    sizes = {k: getattr(c, k) for k in ("vocab_size", "embedding_dim", "hidden_size",
                                        "num_layers", "bidirectional", "num_classes",
                                        "num_tags", "tgt_vocab_size") if hasattr(c, k)}
    return {"name": name, "task": task.task, "labels": task.labels, "cell": c.cell,
            "sizes": sizes, "parameters": int(sum(p.size for p in task.model.params.values())),
            "ready": True}


def create_app(models: dict, options: ServeOptions | None = None):
    """The Starlette application serving ``models`` ({name: rnnkit.pipeline.Task})."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    from .batching import Batcher

    opts = options or ServeOptions()
    if not models:
        raise ValueError("no model to serve")
    registry = CollectorRegistry()
    requests = Counter("rnnkit_requests", "HTTP requests answered", ["endpoint", "code"],
                       registry=registry)
    errors = Counter("rnnkit_errors", "requests answered with a status of 400 or more",
                     ["endpoint", "code"], registry=registry)
    latency = Histogram("rnnkit_request_seconds", "time from request to answer", ["endpoint"],
                        registry=registry, buckets=(.001, .0025, .005, .01, .025, .05, .1, .25,
                                                    .5, 1, 2.5, 5, 10, 30))
    sizes = [2 ** k for k in range(opts.max_batch.bit_length())]
    batch_sizes = Histogram("rnnkit_batch_size", "instances per batch", ["model"],
                            registry=registry,
                            buckets=sorted({*sizes, opts.max_batch}))
    invariant = blas.batch_invariant_available()
    batchers = {}
    for name, task in models.items():
        beam = opts.beam_size if task.task == "translate" else 1

        def run(lines, task=task, beam=beam):
            return task.records(lines, batch_size=max(len(lines), 1), beam_size=beam)

        batchers[name] = Batcher(run, opts.max_batch if invariant else 1,
                                 opts.max_delay_ms / 1000, name,
                                 on_batch=batch_sizes.labels(name).observe)

    def model(request: Request):
        name = request.path_params["name"]
        if name not in models:
            raise HTTPError(404, f"no model {name!r}; serving {', '.join(models)}")
        return name, models[name]

    async def body(request: Request) -> dict:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > opts.max_body:
            raise HTTPError(413, f"request body of {declared} bytes; the limit is "
                                 f"{opts.max_body} (--max-body)")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > opts.max_body:
                raise HTTPError(413, f"request body over {opts.max_body} bytes (--max-body)")
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"the body is not JSON: {e}") from None
        if not isinstance(value, dict):
            raise HTTPError(400, f"the body must be a JSON object, got {type(value).__name__}")
        return value

    async def in_time(awaitable):
        try:
            return await asyncio.wait_for(awaitable, opts.timeout)
        except TimeoutError:
            raise HTTPError(504, f"no answer within {opts.timeout:g} s (--timeout)") from None

    async def predict(request: Request):
        name, task = model(request)
        if task.task == "lm":
            raise HTTPError(400, f"{name} is a language model: POST /v1/models/{name}:generate")
        with batchers[name].arriving():
            data = await body(request)
        instances = data.get("instances")
        if not isinstance(instances, list) or not instances:
            raise HTTPError(400, '"instances" must be a non-empty list of strings')
        for i, x in enumerate(instances):
            if not isinstance(x, str):
                raise HTTPError(400, f"instance {i} is {type(x).__name__}, not a string")
            if len(x) > opts.max_length:
                raise HTTPError(400, f"instance {i} has {len(x)} characters; the limit is "
                                     f"{opts.max_length} (--max-length)")
            if "\n" in x or "\r" in x:
                raise HTTPError(400, f"instance {i} holds a line break; send one line per "
                                     "instance")
        unknown = set(data) - {"instances"}
        if unknown:
            raise HTTPError(400, f"unknown field(s) {', '.join(sorted(unknown))}; expected "
                                 '"instances"')
        records = await in_time(batchers[name].submit(instances))
        return JSONResponse({"predictions": records})

    async def generate(request: Request):
        name, task = model(request)
        if task.task != "lm":
            raise HTTPError(400, f"{name} is a {task.task} model: POST "
                                 f"/v1/models/{name}:predict")
        data = await body(request)
        args = _generate_args(data, opts)
        try:
            with warnings.catch_warnings():  # the answer names the prompt's unknown tokens
                warnings.simplefilter("ignore")
                pieces = task.sample(args["prompt"], args["temperature"], args["top_k"],
                                     args["seed"], args["top_p"], args["stop_at_eos"])
        except ValueError as e:
            raise HTTPError(400, str(e)) from None
        unknown = task.unseen(args["prompt"])
        batcher = batchers[name]
        n = args["max_tokens"]
        if not args["stream"]:
            text = await in_time(batcher.call(lambda: "".join(islice(pieces, n))))
            return JSONResponse({"output": args["prompt"] + text, "text": text,
                                 "unknown": unknown})

        async def events() -> AsyncIterator[str]:
            text = ""
            for _ in range(n):
                piece = await batcher.call(next, pieces, None)
                if piece is None:  # <eos> drawn (stop_at_eos)
                    break
                text += piece
                yield f"data: {json.dumps({'text': piece}, ensure_ascii=False)}\n\n"
            final = {"done": True, "output": args["prompt"] + text, "text": text,
                     "unknown": unknown}
            yield f"data: {json.dumps(final, ensure_ascii=False)}\n\n"
        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def list_models(request: Request):
        return JSONResponse({"models": [describe(n, t) for n, t in models.items()]})

    async def one_model(request: Request):
        name, task = model(request)
        return JSONResponse(describe(name, task))

    async def healthz(request: Request):
        return JSONResponse({"status": "ok", "models": list(models)})

    async def metrics(request: Request):
        return Response(generate_latest(registry),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    schema = openapi(list(models))

    async def openapi_json(request: Request):
        return JSONResponse(schema)

    routes = [Route("/healthz", healthz), Route("/metrics", metrics),
              Route("/openapi.json", openapi_json), Route("/v1/models", list_models),
              Route("/v1/models/{name}:predict", predict, methods=["POST"]),
              Route("/v1/models/{name}:generate", generate, methods=["POST"]),
              Route("/v1/models/{name}", one_model)]

    @asynccontextmanager
    async def lifespan(app):
        yield
        for b in batchers.values():
            b.close()

    app = Starlette(routes=routes, lifespan=lifespan)

    def endpoint(path: str) -> str:  # a bounded label: the route, not the raw path
        for suffix in (":predict", ":generate"):
            if path.endswith(suffix):
                return "/v1/models/{name}" + suffix
        if path.startswith("/v1/models/"):
            return "/v1/models/{name}"
        return path if path in ("/healthz", "/metrics", "/openapi.json", "/v1/models") \
            else "other"

    class Guard:
        """Key check, JSON errors, metrics: around every request."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            start, where, status = time.perf_counter(), endpoint(scope["path"]), [500]

            async def sending(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                if opts.api_key and scope["path"] != "/healthz":
                    _check_key(scope, opts.api_key)
                await self.inner(scope, receive, sending)
            except HTTPError as e:
                await _answer(e.status, e.message, sending, e.status == 401)
            finally:
                code = str(status[0])
                requests.labels(where, code).inc()
                if status[0] >= 400:
                    errors.labels(where, code).inc()
                latency.labels(where).observe(time.perf_counter() - start)

    def error(status: int, message: str):
        return JSONResponse({"error": message}, status,
                            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None)

    async def http_error(request, exc):
        return error(exc.status, exc.message)

    async def starlette_error(request, exc):  # unknown route, wrong method
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}")

    async def value_error(request, exc):  # bad input that reached the model: the client's
        return error(400, str(exc))

    async def server_error(request, exc):  # logged by uvicorn; the server goes on
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    app.add_exception_handler(HTTPError, http_error)
    app.add_exception_handler(HTTPException, starlette_error)
    app.add_exception_handler(ValueError, value_error)
    app.add_exception_handler(Exception, server_error)
    return Guard(app)


async def _answer(status: int, message: str, send, challenge: bool = False) -> None:
    body = json.dumps({"error": message}, ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    if challenge:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _check_key(scope, key: str) -> None:
    given = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                             key.encode()):
        raise HTTPError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'")


def _generate_args(data: dict, opts: ServeOptions) -> dict:
    fields = {"prompt": str, "max_tokens": int, "temperature": (int, float), "top_k": int,
              "top_p": (int, float), "seed": int, "stop_at_eos": bool, "stream": bool}
    unknown = set(data) - set(fields)
    if unknown:
        raise HTTPError(400, f"unknown field(s) {', '.join(sorted(unknown))}; expected "
                             f"{', '.join(fields)}")
    args = {"prompt": data.get("prompt"), "max_tokens": data.get("max_tokens", 200),
            "temperature": data.get("temperature", 1.0), "top_k": data.get("top_k"),
            "top_p": data.get("top_p"), "seed": data.get("seed"),
            "stop_at_eos": data.get("stop_at_eos", False), "stream": data.get("stream", False)}
    for k, kind in fields.items():
        v = args[k]
        optional = k in ("top_k", "top_p", "seed")
        if (v is None and optional) or (isinstance(v, kind) and not (
                isinstance(v, bool) and kind is not bool)):
            continue
        want = {str: "a string", int: "an integer", bool: "true or false"}.get(kind, "a number")
        raise HTTPError(400, f'"{k}" must be {want}, got {json.dumps(v)}')
    if not args["prompt"]:
        raise HTTPError(400, '"prompt" must be a non-empty string')
    if len(args["prompt"]) > opts.max_length:
        raise HTTPError(400, f"the prompt has {len(args['prompt'])} characters; the limit is "
                             f"{opts.max_length} (--max-length)")
    if not 0 <= args["max_tokens"] <= opts.max_tokens:
        raise HTTPError(400, f'"max_tokens" must be in [0, {opts.max_tokens}], got '
                             f"{args['max_tokens']}")
    return args


def openapi(names: list[str]) -> dict:
    """The OpenAPI 3.1 description of the server's endpoints for these model names."""
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "enum": names}}
    error = {"description": "error", "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}}}}}}

    def answers(ok: str, schema: dict | None = None, extra: tuple = ()) -> dict:
        out = {"200": {"description": ok, "content": {"application/json": {
            "schema": schema or {"type": "object"}}}}}
        for code in extra:
            out[code] = error
        return out

    record = {"type": "object", "required": ["output"], "properties": {
        "output": {"type": "string", "description": "the line `rnnkit predict` prints"},
        "label": {"type": "string"}, "probabilities": {"type": "object",
                                                       "additionalProperties": {
                                                           "type": "number"}},
        "tokens": {"type": "array", "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "translation": {"type": "string"},
        "score": {"type": "number", "description": "log p(translation | text)"}}}
    predict_body = {"type": "object", "required": ["instances"], "properties": {
        "instances": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
        "additionalProperties": False}
    generate_body = {"type": "object", "required": ["prompt"], "additionalProperties": False,
                     "properties": {"prompt": {"type": "string"},
                                    "max_tokens": {"type": "integer", "default": 200},
                                    "temperature": {"type": "number", "default": 1.0},
                                    "top_k": {"type": ["integer", "null"]},
                                    "top_p": {"type": ["number", "null"]},
                                    "seed": {"type": ["integer", "null"]},
                                    "stop_at_eos": {"type": "boolean", "default": False},
                                    "stream": {"type": "boolean", "default": False}}}
    bad = ("400", "401", "404", "413", "504")
    return {
        "openapi": "3.1.0",
        "info": {"title": "rnnkit serve", "version": _version()},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": {
            "/healthz": {"get": {"summary": "200 once every model is loaded", "security": [],
                                 "responses": answers("ready")}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text format 0.0.4"}}}},
            "/v1/models": {"get": {"summary": "the models served",
                                   "responses": answers("models")}},
            "/v1/models/{name}": {"get": {"summary": "one model", "parameters": [name],
                                          "responses": answers("model", extra=("404",))}},
            "/v1/models/{name}:predict": {"post": {
                "summary": "one record per instance (classify, tag, translate)",
                "parameters": [name],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": predict_body}}},
                "responses": answers("predictions", {"type": "object", "properties": {
                    "predictions": {"type": "array", "items": record}}}, bad)}},
            "/v1/models/{name}:generate": {"post": {
                "summary": "text sampled after a prompt (language models); with stream, "
                           "server-sent events, one per token",
                "parameters": [name],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": generate_body}}},
                "responses": answers("the prompt and the text sampled", {
                    "type": "object", "properties": {"output": {"type": "string"},
                                                     "text": {"type": "string"}}}, bad)}},
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rnnkit")
    except PackageNotFoundError:
        return "0"


def serve(runs: list[str], host: str = "127.0.0.1", port: int = 8000,
          names: list[str] | None = None, options: ServeOptions | None = None,
          drain_seconds: float = 5.0) -> None:
    """Load the runs and serve them until SIGTERM or Ctrl-C, which stop new connections and
    let requests in flight finish (up to ``drain_seconds``)."""
    try:
        import uvicorn
    except ImportError:
        raise ValueError("serving needs the serve extra: pip install 'rnnkit[serve]'") \
            from None
    opts = options or ServeOptions()
    if opts.api_key is None:
        opts.api_key = os.environ.get(API_KEY_ENV) or None
    models = load_models(runs, names)
    warm(models)
    app = create_app(models, opts)
    sock = _bind(host, port)  # before saying "serving": a taken port is a one-line error
    port = sock.getsockname()[1]
    for name, task in models.items():
        print(f"serving {name} ({task.task}) at http://{host}:{port}/v1/models/{name}",
              flush=True)
    if not blas.batch_invariant_available():
        print("numba is missing: each batch holds one instance (batched numbers would "
              "depend on their neighbours)", flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning",
                            timeout_graceful_shutdown=drain_seconds, access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int):
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.set_inheritable(True)
    return sock
