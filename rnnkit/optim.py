"""Optimisers, gradient clipping and learning-rate schedules over named parameter dicts.

An optimiser updates ``params[name]`` in place from ``grads[name]`` (flat dicts, e.g. a model's
``params``/``grads``). Each step equals torch.optim's for the same hyper-parameters (checked to
1e-12 in float64). ``state_dict()`` returns arrays and numbers only, so it saves to safetensors
and JSON, never pickle.
"""

from __future__ import annotations

import math

import numpy as np

from .backend import kernels

Array = np.ndarray


def _flat(x: Array) -> Array:
    """A 1-D view of a contiguous array (a copy would silently drop an in-place update)."""
    if not x.flags.c_contiguous:
        raise ValueError(f"optimizer arrays must be C-contiguous, got strides {x.strides}")
    return x.reshape(-1)


class Optimizer:
    """Base: holds params, grads, ``lr`` and per-parameter state slots."""

    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, Array], grads: dict[str, Array], lr: float,
                 weight_decay: float = 0.0):
        if isinstance(lr, bool) or not (isinstance(lr, int | float) and 0 < lr < math.inf):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        missing = set(params) - set(grads)
        if missing:
            raise ValueError(f"no gradient for parameter(s) {sorted(missing)}")
        for name, p in params.items():  # a broadcasting gradient would update silently wrong
            g = grads[name]
            if getattr(g, "shape", None) != p.shape:
                raise ValueError(f"gradient of {name!r} has shape {getattr(g, 'shape', None)}, "
                                 f"the parameter {p.shape}")
        self.params, self.grads = params, grads
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.t = 0
        self.state = {s: {k: np.zeros_like(p) for k, p in params.items()} for s in self.slots}

    def step(self) -> None:
        """One update of every parameter from its gradient (in place)."""
        self.t += 1
        for name, p in self.params.items():
            self._update(name, p, self.grads[name])

    def _update(self, name: str, p: Array, g: Array) -> None:
        raise NotImplementedError

    def _scratch(self, p: Array) -> Array:
        """A work array of p's shape and dtype, shared by all parameters (one allocation of
        the largest size instead of fresh temporaries per parameter and step)."""
        buf = getattr(self, "_work", None)
        if buf is None or buf.size < p.size or buf.dtype != p.dtype:
            buf = self._work = np.empty(max(q.size for q in self.params.values()), p.dtype)
        return buf[:p.size].reshape(p.shape)

    def state_dict(self) -> tuple[dict[str, Array], dict]:
        """(arrays ``{slot/name: array}``, scalars) — what :meth:`load_state_dict` takes."""
        arrays = {f"{s}/{k}": v for s, d in self.state.items() for k, v in d.items()}
        return arrays, {"type": type(self).__name__, "t": self.t, "lr": self.lr}

    def load_state_dict(self, arrays: dict[str, Array], scalars: dict) -> None:
        """Restore what :meth:`state_dict` returned; names and shapes must match."""
        if scalars.get("type") != type(self).__name__:
            raise ValueError(f"optimizer state is for {scalars.get('type')}, not "
                             f"{type(self).__name__}")
        expected = {f"{s}/{k}": v for s, d in self.state.items() for k, v in d.items()}
        if set(arrays) != set(expected):
            diff = sorted(set(arrays) ^ set(expected))
            raise ValueError(f"optimizer state does not match the parameters: {diff[:5]}")
        for key, dst in expected.items():
            src = arrays[key]
            if src.shape != dst.shape:
                raise ValueError(f"optimizer state {key}: shape {src.shape}, expected "
                                 f"{dst.shape}")
            dst[...] = src
        self.t, self.lr = int(scalars["t"]), float(scalars["lr"])


class SGD(Optimizer):
    """torch.optim.SGD: d = g + λθ; b ← μ b + (1 − τ) d (b = d at the first step);
    d ← d + μ b (Nesterov) or b; θ ← θ − lr d."""

    def __init__(self, params, grads, lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        self.slots = ("momentum_buffer",) if momentum else ()
        super().__init__(params, grads, lr, weight_decay)
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def _update(self, name, p, g):
        d = g + self.weight_decay * p if self.weight_decay else g
        if self.momentum:
            b = self.state["momentum_buffer"][name]
            if self.t == 1:
                b[...] = d
            else:
                b *= self.momentum
                b += (1 - self.dampening) * d
            d = d + self.momentum * b if self.nesterov else b
        p -= self.lr * d


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient):
        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
    """

    slots = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params, grads, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, grads, lr, weight_decay)
        self.betas, self.eps = betas, eps

    def _update(self, name, p, g):
        b1, b2 = self.betas
        if self.weight_decay:
            if self.decoupled:
                p *= 1 - self.lr * self.weight_decay
            else:
                g = g + self.weight_decay * p
        m, v = self.state["exp_avg"][name], self.state["exp_avg_sq"][name]
        # Fused in the kernel engine: with a 12,900-word output layer (6.6M values per array)
        # NumPy's eleven passes and temporaries cost more than the layer's backward GEMM.
        f = p.dtype.type  # scalars in the parameters' precision, as NumPy would use them
        kernels().adam(_flat(p), _flat(g), _flat(m), _flat(v), f(b1), f(b2),
                       f(self.lr / (1 - b1**self.t)), f(math.sqrt(1 - b2**self.t)), f(self.eps),
                       _flat(self._scratch(p)))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay θ ← θ (1 − lr λ) before the step."""

    decoupled = True

    def __init__(self, params, grads, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2):
        super().__init__(params, grads, lr, betas, eps, weight_decay)


class RMSprop(Optimizer):
    """torch.optim.RMSprop: s ← α s + (1 − α) g²; (centred: ḡ ← α ḡ + (1 − α) g,
    s̃ = s − ḡ²); δ = g / (√s̃ + ε); with momentum b ← μ b + δ, θ ← θ − lr b, else θ ← θ − lr δ."""


    def __init__(self, params, grads, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        self.slots = (("square_avg",) + (("grad_avg",) if centered else ())
                      + (("momentum_buffer",) if momentum else ()))
        super().__init__(params, grads, lr, weight_decay)
        self.alpha, self.eps, self.momentum, self.centered = alpha, eps, momentum, centered

    def _update(self, name, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        s = self.state["square_avg"][name]
        s *= self.alpha
        s += (1 - self.alpha) * g * g
        if self.centered:
            ga = self.state["grad_avg"][name]
            ga *= self.alpha
            ga += (1 - self.alpha) * g
            avg = np.sqrt(s - ga * ga) + self.eps
        else:
            avg = np.sqrt(s) + self.eps
        if self.momentum:
            b = self.state["momentum_buffer"][name]
            b *= self.momentum
            b += g / avg
            p -= self.lr * b
        else:
            p -= self.lr * (g / avg)


class Adagrad(Optimizer):
    """torch.optim.Adagrad: S ← S + g²; θ ← θ − (lr / (1 + (t − 1) η)) g / (√S + ε)."""

    slots = ("sum",)

    def __init__(self, params, grads, lr: float = 1e-2, lr_decay: float = 0.0,
                 weight_decay: float = 0.0, eps: float = 1e-10):
        super().__init__(params, grads, lr, weight_decay)
        self.lr_decay, self.eps = lr_decay, eps

    def _update(self, name, p, g):
        if self.weight_decay:
            g = g + self.weight_decay * p
        s = self.state["sum"][name]
        s += g * g
        clr = self.lr / (1 + (self.t - 1) * self.lr_decay)
        p -= clr * (g / (np.sqrt(s) + self.eps))


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop, "adagrad": Adagrad}


def make_optimizer(name: str, params, grads, **kwargs) -> Optimizer:
    """Build an optimiser by its lower-case name (``sgd``, ``adam``, ``adamw``, ``rmsprop``,
    ``adagrad``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, grads, **kwargs)


# ----------------------------------------------------------------------------- clipping
def global_norm(grads: dict[str, Array]) -> float:
    """‖g‖₂ over every array of the dict together (inf or NaN when a gradient is)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_grad_norm(grads: dict[str, Array], max_norm: float) -> float:
    """Scale all gradients by min(1, max_norm / (‖g‖ + 1e-6)) in place (as
    torch.nn.utils.clip_grad_norm_); returns the norm before clipping."""
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    norm = global_norm(grads)
    coef = max_norm / (norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            g *= coef
    return norm


def clip_grad_value(grads: dict[str, Array], clip_value: float) -> float:
    """Clamp every gradient element to [−c, c] in place; returns the global norm before."""
    if clip_value <= 0:
        raise ValueError(f"clip_value must be positive, got {clip_value}")
    norm = global_norm(grads)
    for g in grads.values():
        np.clip(g, -clip_value, clip_value, out=g)
    return norm


# ----------------------------------------------------------------------------- schedules
class Schedule:
    """Sets ``optimizer.lr`` from the base rate; call :meth:`step` once per epoch or per step,
    as you choose, after the optimiser's step. ``state_dict`` is plain JSON."""

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.count = 0

    def step(self, metric: float | None = None) -> float:
        """Advance one count and set ``optimizer.lr``; returns the new rate."""
        self.count += 1
        self.optimizer.lr = self.lr_at(self.count)
        return self.optimizer.lr

    def lr_at(self, count: int) -> float:
        """The learning rate after ``count`` steps of the schedule."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """JSON-able state (what a checkpoint stores)."""
        return {"type": type(self).__name__, "base_lr": self.base_lr, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"schedule state is for {state.get('type')}, not "
                             f"{type(self).__name__}")
        self.base_lr, self.count = float(state["base_lr"]), int(state["count"])


class StepLR(Schedule):
    """lr = base · γ^⌊count / step_size⌋ (torch.optim.lr_scheduler.StepLR)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        super().__init__(optimizer)
        self.step_size, self.gamma = step_size, gamma

    def lr_at(self, count):
        return self.base_lr * self.gamma ** (count // self.step_size)


class CosineLR(Schedule):
    """lr = η_min + (base − η_min)(1 + cos(π count / T_max)) / 2 (CosineAnnealingLR)."""

    def __init__(self, optimizer, t_max: int, eta_min: float = 0.0):
        if t_max < 1:
            raise ValueError(f"t_max must be >= 1, got {t_max}")
        super().__init__(optimizer)
        self.t_max, self.eta_min = t_max, eta_min

    def lr_at(self, count):
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * count / self.t_max)) / 2


class LinearWarmup(Schedule):
    """lr = base · min(1, (count + 1) / warmup_steps): rises linearly, then stays."""

    def __init__(self, optimizer, warmup_steps: int):
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
        super().__init__(optimizer)
        self.warmup_steps = warmup_steps
        optimizer.lr = self.lr_at(0)

    def lr_at(self, count):
        return self.base_lr * min(1.0, (count + 1) / self.warmup_steps)


class ReduceLROnPlateau(Schedule):
    """Multiply lr by ``factor`` when the metric (lower is better) has not improved by more
    than ``threshold`` (relative) for ``patience`` calls (torch's defaults, mode="min")."""

    def __init__(self, optimizer, factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, min_lr: float = 0.0):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        super().__init__(optimizer)
        self.factor, self.patience = factor, patience
        self.threshold, self.min_lr = threshold, min_lr
        self.best = math.inf
        self.bad = 0

    def step(self, metric: float | None = None) -> float:
        """Record the epoch's ``metric`` (lower is better); after ``patience`` epochs without
        improvement multiply lr by ``factor`` (not below ``min_lr``); returns the rate.
        """
        if metric is None:
            raise ValueError("ReduceLROnPlateau.step needs the metric")
        self.count += 1
        if metric < self.best * (1 - self.threshold):
            self.best, self.bad = float(metric), 0
        else:
            self.bad += 1
        if self.bad > self.patience:
            self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
            self.bad = 0
        return self.optimizer.lr

    def state_dict(self):
        return {**super().state_dict(), "best": self.best, "bad": self.bad,
                "lr": self.optimizer.lr}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.best, self.bad = float(state["best"]), int(state["bad"])
        self.optimizer.lr = float(state["lr"])
