"""rnnkit — recurrent neural networks (RNN, LSTM, GRU) on NumPy, with hand-derived BPTT.

    import rnnkit
    layer = rnnkit.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    out, state, cache = layer.forward(x)            # x (N, T, D) -> out (N, T, 2*16)
    dx, dstate = layer.backward(dout, None, cache)  # gradients added into layer.grads
    out, state = layer(x)                           # inference, no cache kept
    layer = rnnkit.from_torch(torch_lstm)           # and rnnkit.to_torch_state_dict(layer)
    module = rnnkit.to_torch(model)                 # a layer or a whole model → torch.nn.Module

Shapes are batch-first: x (N, T, D), out (N, T, dirs·H), states (layers·dirs, N, H) (x and out
time-major with ``batch_first=False``); names, shapes and gate orders are PyTorch's. Where to
read on (``python -m pydoc rnnkit.<module>``):

    cells       one time step of each cell: the equations, forward and backward
    recurrent   RNN / LSTM / GRU layers: time loop, layers, directions, variable lengths
    plan        which path runs the time loops (one planner; rnnkit.plan.forced to choose)
    runner      the paths: packed time-major, batch-major, the per-step loop
    kernels     the step functions on NumPy blocks  (_numba_kernels: compiled, the time loops)
    blas        matrix products: NumPy's BLAS, or Intel MKL's packed GEMM where measured faster
    layers      Linear, Embedding, Dropout, DotAttention, AdditiveAttention
    losses      cross_entropy, mse_loss        optim   optimisers, clipping, schedules
    models      SequenceClassifier, SequenceTagger, Seq2Seq, LanguageModel (+ config dataclasses)
    train       Trainer: batches, checkpoints, resume, early stopping, curves
    data        vocabularies, tokenisers, seeded splits, file readers
    pipeline    train / evaluate / predict / generate on files (what the CLI calls)
    interop     PyTorch and ONNX in and out      io      checkpoints
    torch_models  whole models as torch.nn.Modules (rnnkit.to_torch)
    diagnostics numerical gradients, gradient flow through time
    plots       attention heat maps, confusion matrices

The derivation, equation by equation next to the code: docs/bptt.md in the repository.
"""

from .interop import export_onnx, from_onnx, from_torch, to_torch, to_torch_state_dict
from .recurrent import GRU, LSTM, RNN, RecurrentLayer

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "RecurrentLayer", "from_torch", "from_onnx", "export_onnx",
           "to_torch", "to_torch_state_dict", "__version__"]
