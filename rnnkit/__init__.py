"""rnnkit — recurrent neural networks (RNN, LSTM, GRU) on NumPy, with hand-derived BPTT.

    import rnnkit
    layer = rnnkit.LSTM(input_size=8, hidden_size=16, num_layers=2, bidirectional=True)
    out, state, cache = layer.forward(x)            # x (N, T, D) -> out (N, T, 2*16)
    dx, dstate = layer.backward(dout, None, cache)  # gradients added into layer.grads
"""

from .recurrent import GRU, LSTM, RNN, RecurrentLayer

__version__ = "0.1.0"
__all__ = ["RNN", "LSTM", "GRU", "RecurrentLayer", "__version__"]
