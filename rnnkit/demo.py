"""``rnnkit demo``: train a small recurrent network on the adding problem and watch the loss fall.

The model is a recurrent layer whose last hidden state feeds a linear read-out,
ŷ = W h_T + b, trained with the mean squared error and Adam: every piece is rnnkit's own
forward and hand-written backward.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from .layers import Linear
from .losses import mse_loss
from .optim import Adam
from .recurrent import GRU, LSTM, RNN
from .tasks import ADDING_BASELINE_MSE, adding_problem

LAYERS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def run_demo(cell: str = "lstm", length: int = 30, hidden: int = 32, steps: int = 1500,
             batch_size: int = 64, lr: float = 1e-2, seed: int = 0,
             print_every: int = 100, out: Callable[[str], None] = print) -> list[float]:
    """Train and return the test MSE after every ``print_every`` steps (printed as it goes)."""
    if cell not in LAYERS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {', '.join(LAYERS)}")
    if steps < 1 or batch_size < 1 or hidden < 1:
        raise ValueError("steps, batch_size and hidden must be positive")
    rng = np.random.default_rng(seed)
    rnn = LAYERS[cell](2, hidden, seed=seed)
    head = Linear(hidden, 1, seed=seed + 1)
    params = {**{f"rnn.{k}": v for k, v in rnn.params.items()},
              **{f"head.{k}": v for k, v in head.params.items()}}
    grads = {**{f"rnn.{k}": v for k, v in rnn.grads.items()},
             **{f"head.{k}": v for k, v in head.grads.items()}}
    opt = Adam(params, grads, lr=lr)
    x_test, y_test = adding_problem(512, length, np.random.default_rng(seed + 12345))

    def predict(x, keep):
        out, _, cache = rnn.forward(x, inference=not keep)
        y, hcache = head.forward(out[:, -1])
        return y, cache, hcache, out.shape

    out(f"rnnkit demo: {cell.upper()} (hidden {hidden}) learns the adding problem, "
        f"T={length}; predicting the mean gives MSE {ADDING_BASELINE_MSE:.3f}")
    history = []
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        x, y = adding_problem(batch_size, length, rng)
        pred, cache, hcache, shape = predict(x, keep=True)
        loss, dpred = mse_loss(pred, y)
        rnn.zero_grad()
        head.zero_grad()
        dh_last = head.backward(dpred, hcache)
        dout = np.zeros(shape, dtype=rnn.dtype)
        dout[:, -1] = dh_last
        rnn.backward(dout, None, cache)
        opt.step()
        if step % print_every == 0 or step == steps:
            test_mse, _ = mse_loss(predict(x_test, keep=False)[0], y_test)
            history.append(test_mse)
            out(f"step {step:5d}  train MSE {loss:.4f}  test MSE {test_mse:.4f}  "
                f"({time.perf_counter() - t0:.1f}s)")
    final = history[-1]
    verdict = "solved" if final < 0.1 * ADDING_BASELINE_MSE else "not solved yet"
    out(f"test MSE {final:.4f} = {100 * final / ADDING_BASELINE_MSE:.1f}% of the baseline: "
        f"{verdict} (solved means below 10%)")
    return history
