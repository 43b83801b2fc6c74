"""rnnkit — recurrent neural networks (RNN, LSTM, GRU) on NumPy, with hand-derived BPTT.

    import rnnkit
    layer = rnnkit.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    out, state, cache = layer.forward(x)            # x (N, T, D) -> out (N, T, 2*16)
    dx, dstate = layer.backward(dout, None, cache)  # gradients added into layer.grads
    layer = rnnkit.from_torch(torch_lstm)           # and layer.to_torch_state_dict()
"""

from .interop import export_onnx, from_onnx, from_torch
from .recurrent import GRU, LSTM, RNN, RecurrentLayer

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "RecurrentLayer", "from_torch", "from_onnx", "export_onnx",
           "__version__"]
