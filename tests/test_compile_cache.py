"""Code numba compiles in one process and the code it loads from its on-disk cache in the next
give the same bits. They did not while LLVM was free to contract a·b + c into FMAs: the LSTM's
c_t = f⊙c_{t−1} + i⊙g fused one way in the compiling process and another in the cached object
code, and a training run resumed in a new process drifted from the uninterrupted one (CI's
test_crash failure, reproduced with an empty cache)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("numba")

CHILD = r'''
import hashlib, numpy as np, rnnkit
from rnnkit import optim
rng = np.random.default_rng(0)
h = hashlib.sha1()
for make in (lambda: rnnkit.LSTM(6, 7, bidirectional=True, seed=3),
             lambda: rnnkit.GRU(6, 7, seed=3)):
    for n in (3, 8):  # row-by-row products, and NumPy's BLAS from the compiled loop
        layer = make()
        x = rng.standard_normal((n, 5, 6)).astype(np.float32)
        out, _, cache = layer.forward(x, lengths=np.arange(n) % 5 + 1)
        dx, _ = layer.backward(rng.standard_normal(out.shape).astype(np.float32), None, cache)
        opt = optim.Adam(layer.params, layer.grads, lr=0.01)
        opt.step()
        for a in (out, dx, *layer.params.values()):
            h.update(np.ascontiguousarray(a).tobytes())
print(h.hexdigest())
'''


def test_cached_code_computes_what_fresh_code_computed(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    env.pop("RNNKIT_ENGINE", None)
    runs = [subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                           text=True, timeout=600, cwd=tmp_path) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert any((tmp_path / "numba-cache").rglob("*.nbc")), "nothing was cached: no test"
    assert runs[0].stdout == runs[1].stdout  # compiled here == loaded from the cache
