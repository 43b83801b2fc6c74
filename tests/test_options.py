"""Cell names and recurrent options: what rnnkit.options builds, and that the task models'
configs carry every option through save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.io import load_model, save_checkpoint
from rnnkit.models import ClassifierConfig, SequenceClassifier, TaggerConfig
from rnnkit.options import CELL_SPECS, RecurrentOptions, make_recurrent


@pytest.mark.parametrize("cell", list(CELL_SPECS))
def test_every_cell_name_builds_its_layer(cell):
    layer = make_recurrent(cell, 3, 4, 2, bidirectional=True, dtype="float64", seed=1)
    cls, kwargs, _ = CELL_SPECS[cell]
    assert type(layer) is cls and layer.num_layers == 2 and layer.bidirectional
    for k, v in kwargs.items():
        assert getattr(layer, k) == v


def test_options_reach_the_layer():
    o = RecurrentOptions(init="orthogonal", forget_bias=1.0, peepholes=True,
                         init_state="learned", weight_drop=0.25, variational=True)
    layer = make_recurrent("lstm", 3, 4, 2, o, dropout=0.3, dtype="float64", seed=1)
    assert layer.peepholes and "weight_peephole_l0" in layer.params
    assert "h0" in layer.params and "c0" in layer.params
    assert layer.weight_drop == 0.25 and layer.variational and layer.dropout == 0.3
    np.testing.assert_array_equal(layer.weights(0, 0).b[4:8], 1.0)
    w = layer.params["weight_hh_l0"][:4]
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)


def test_step_extras_reach_the_layer():
    o = RecurrentOptions(layer_norm=True, zoneout=0.1, zoneout_cell=0.3, recurrent_dropout=0.2)
    layer = make_recurrent("lstm", 3, 4, 1, o)
    assert layer.layer_norm and (layer.zoneout, layer.zoneout_c) == (0.1, 0.3)
    assert layer.recurrent_dropout == 0.2
    gru = make_recurrent("gru", 3, 4, 1, RecurrentOptions(zoneout=0.1))
    assert (gru.zoneout, gru.zoneout_c) == (0.1, 0.0)


def test_peepholes_are_an_lstm_option():
    with pytest.raises(ValueError, match="peepholes is an LSTM option; cell 'gru' has none"):
        make_recurrent("gru", 3, 4, options=RecurrentOptions(peepholes=True))
    with pytest.raises(ValueError, match="unknown cell 'lstmx'; expected one of rnn, rnn-relu"):
        make_recurrent("lstmx", 3, 4)


def test_a_model_saves_and_loads_its_options(tmp_path):
    cfg = ClassifierConfig(vocab_size=20, num_classes=3, embedding_dim=5, hidden_size=6,
                           num_layers=2, cell="gru-after", dropout=0.2, chrono=30,
                           weight_drop=0.1, variational=True, init_state="learned",
                           dtype="float64")
    model = SequenceClassifier(cfg)
    save_checkpoint(tmp_path / "m", model)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["model"]["chrono"] == 30 and saved["model"]["cell"] == "gru-after"
    loaded, _ = load_model(tmp_path / "m")
    assert loaded.config == cfg
    assert loaded.layers["rnn"].reset_after and loaded.layers["rnn"].weight_drop == 0.1
    for name, p in model.params.items():
        np.testing.assert_array_equal(loaded.params[name], p)


def test_a_config_saved_before_the_options_existed_loads_with_their_defaults():
    old = {"vocab_size": 9, "num_tags": 3, "cell": "lstm"}
    cfg = TaggerConfig(**old)
    assert cfg.weight_drop == 0.0 and not cfg.variational and cfg.forget_bias is None
