"""Checkpoints: a directory of safetensors weights and JSON, written atomically, loaded with
every name, shape, dtype and version checked. Never pickle.

    run/checkpoints/step-00000120/   model.safetensors  config.json
                                     optimizer.safetensors  trainer.json
    run/last -> checkpoints/step-00000120      (symlinks, replaced atomically)
    run/best -> checkpoints/step-00000080

A checkpoint is first written whole into a temporary directory (each file fsynced), renamed
into place and only then pointed at by ``last``/``best`` with an atomic symlink swap: a kill at
any instant leaves the previous checkpoint complete and the links pointing at a complete one.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .backend import parameter_budget

FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a full disk says "No space left on device" without the file
        raise OSError(exc.errno, f"cannot write {path} ({len(data):,} bytes): "
                                 f"{exc.strerror or exc}") from None


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write a file whole or not at all: a temporary file of this process's own name beside
    it, fsynced, then renamed over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    _write_bytes(tmp, data)
    os.replace(tmp, path)
    return path


#: Lock files this process holds, by run directory: (open file, how many holders).
_held: dict[Path, list] = {}


@contextmanager
def run_lock(run_dir: str | Path):
    """One writer per run directory: an exclusive lock on ``run_dir/.lock`` (fcntl.flock,
    released by the OS when the process dies), held for the block; re-entrant within this
    process. A second process is refused with the holder's pid."""
    run_dir = Path(run_dir).resolve()
    held = _held.get(run_dir)
    if held is not None:
        held[1] += 1
        try:
            yield
        finally:
            held[1] -= 1
        return
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / ".lock", "a+")
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; one writer is the user's to keep
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            pid = f.read().strip() or "unknown"
            f.close()
            raise ValueError(f"{run_dir} is being written by another rnnkit process (pid "
                             f"{pid}); wait for it, or train into another --out") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _held[run_dir] = [f, 1]
    try:
        yield
    finally:
        del _held[run_dir]
        if created and [p.name for p in run_dir.iterdir()] == [".lock"]:
            (run_dir / ".lock").unlink()  # nothing was written: leave no directory behind
            run_dir.rmdir()
        f.close()  # closing releases the lock


def _save_tensors(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save

    _write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))


#: config.json and trainer.json larger than this are refused unread (vocabularies included,
#: real ones are a few MB).
MAX_JSON_BYTES = 256 << 20


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of a safetensors file. The library checks the header against the file's
    size before it allocates anything: a truncated file, a tampered header or one declaring
    an enormous tensor is an error here, not an allocation."""
    from safetensors.numpy import load_file

    return _safetensors(path, load_file)


def _tensor_elements(path: Path) -> int:
    """How many numbers the safetensors file holds, from its (validated) header alone."""
    from safetensors import safe_open

    def count(p):
        with safe_open(p, framework="numpy") as f:
            return sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())

    return _safetensors(path, count)


def _safetensors(path: Path, read):
    """``read(str(path))`` with a missing or unreadable file turned into a ValueError."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: missing")
    try:
        return read(str(path))
    except _Refused:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None


def _read_json(path: Path) -> dict:
    if path.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{path}: {path.stat().st_size} bytes, more than any rnnkit writes "
                         f"({MAX_JSON_BYTES}); refusing to read it")
    try:
        obj = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: JSON nested too deeply for a config") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(obj).__name__}")
    return obj


def save_checkpoint(directory: str | Path, model, optimizer=None, trainer_state: dict | None = None,
                    extra_config: dict | None = None) -> Path:
    """Write a new checkpoint directory atomically (it must not exist yet); returns its path."""
    from . import __version__

    directory = Path(directory)
    if directory.exists():
        raise ValueError(f"checkpoint directory {directory} already exists")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _save_tensors(tmp / "model.safetensors", model.params)
    config = {"format_version": FORMAT_VERSION, "rnnkit_version": __version__,
              "model_type": type(model).__name__, "model": model.config_dict(),
              **(extra_config or {})}
    _write_bytes(tmp / "config.json", json.dumps(config, indent=1).encode())
    if optimizer is not None:
        arrays, scalars = optimizer.state_dict()
        _save_tensors(tmp / "optimizer.safetensors", arrays)
        trainer_state = {**(trainer_state or {}), "optimizer": scalars}
    if trainer_state is not None:
        _write_bytes(tmp / "trainer.json", json.dumps(trainer_state, indent=1).encode())
    _fsync_dir(tmp)
    os.rename(tmp, directory)
    _fsync_dir(directory.parent)
    return directory


def point(link: str | Path, target: str | Path) -> None:
    """Make ``link`` a symlink to ``target`` (relative), replacing any old link atomically."""
    link, target = Path(link), Path(target)
    rel = os.path.relpath(target, link.parent)
    tmp = link.parent / f".{link.name}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(rel, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def read_config(directory: str | Path) -> dict:
    """config.json of a checkpoint, with its format version checked."""
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no config.json — not an rnnkit checkpoint")
    config = _read_json(path)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format version {version!r}; this rnnkit reads "
                         f"version {FORMAT_VERSION}")
    return config


_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "BF16": None}


def load_weights(model, directory: str | Path, allow_nonfinite: bool = False) -> None:
    """Copy model.safetensors into ``model.params``: names, shapes and dtypes checked against
    the model from the file's header alone, before any tensor is read; then one tensor at a
    time (memory: the largest tensor, not the file), each checked finite unless
    ``allow_nonfinite`` (rnnkit never saves NaN or inf)."""
    from safetensors import safe_open

    path = Path(directory) / "model.safetensors"

    def read(p):
        with safe_open(p, framework="numpy") as f:
            names = set(f.keys())
            missing = sorted(set(model.params) - names)
            unexpected = sorted(names - set(model.params))
            if missing or unexpected:
                raise _Refused(f"weights do not match the model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
            for name, dst in model.params.items():
                s = f.get_slice(name)
                shape, dtype = tuple(s.get_shape()), _DTYPES.get(s.get_dtype())
                if shape != dst.shape or dtype is None or np.dtype(dtype) != dst.dtype:
                    shown = np.dtype(dtype).name if dtype is not None else s.get_dtype()
                    raise _Refused(f"{name} is {shown}{list(shape)}, the model "
                                   f"expects {dst.dtype}{list(dst.shape)}")
            for name, dst in model.params.items():
                src = f.get_tensor(name)
                if not allow_nonfinite and not np.isfinite(src).all():
                    raise _Refused(f"{name} holds NaN or infinite values (a broken or "
                                   "tampered checkpoint)")
                dst[...] = src

    try:
        _safetensors(path, read)
    except _Refused as exc:
        raise ValueError(f"{path}: {exc}") from None


class _Refused(Exception):
    """A weights file that reads, but not as this model's (kept apart from read errors)."""


def load_model(directory: str | Path, expected_type: str | None = None):
    """Build the model a checkpoint describes and load its weights."""
    from .models import MODELS

    config = read_config(directory)
    mtype = config.get("model_type")
    if expected_type is not None and mtype != expected_type:
        raise ValueError(f"{directory}: checkpoint holds a {mtype}, expected a {expected_type}")
    if mtype not in MODELS:
        raise ValueError(f"{directory}: unknown model type {mtype!r}; known: {sorted(MODELS)}")
    if not isinstance(config.get("model"), dict):
        raise ValueError(f"{directory}/config.json: 'model' must be an object of "
                         f"{mtype} config fields")
    # The config is untrusted: it may build nothing bigger than the weights file it came with.
    with parameter_budget(_tensor_elements(Path(directory) / "model.safetensors")):
        try:
            model = MODELS[mtype].from_config(config["model"])
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"{directory}/config.json: does not describe a valid {mtype} "
                             f"({exc})") from None
    load_weights(model, directory)
    return model, config


def load_training_state(directory: str | Path, optimizer) -> dict:
    """Restore the optimiser from a checkpoint; returns trainer.json."""
    directory = Path(directory)
    path = directory / "trainer.json"
    if not path.is_file():
        raise ValueError(f"{directory}: no trainer.json — a model-only checkpoint cannot resume")
    state = _read_json(path)
    optimizer.load_state_dict(_load_tensors(directory / "optimizer.safetensors"),
                              state["optimizer"])
    return state


def average_checkpoints(directories: list[str | Path], out: str | Path) -> Path:
    """Write to ``out`` a model-only checkpoint whose every weight is the mean of the same
    weight in ``directories`` (checkpoint averaging, as OpenNMT's average_models: a cheap
    ensemble of one run's last steps), summed in float64; its config is the newest's. The
    checkpoints must hold the same model (type and config)."""
    if not directories:
        raise ValueError("no checkpoint to average")
    model, config = load_model(directories[-1])
    total = {k: p.astype(np.float64) for k, p in model.params.items()}
    for d in directories[:-1]:
        other, c = load_model(d)
        if (c.get("model_type"), c.get("model")) != (config.get("model_type"),
                                                       config.get("model")):
            raise ValueError(f"{d} holds another model than {directories[-1]} (type or "
                             "config differ): only checkpoints of one run average")
        for k, p in other.params.items():
            total[k] += p
    for k, p in model.params.items():
        p[...] = total[k] / len(directories)
    extra = {k: v for k, v in config.items()
             if k not in ("format_version", "rnnkit_version", "model_type", "model")}
    extra["averaged"] = [str(d) for d in directories]
    return save_checkpoint(out, model, extra_config=extra)
