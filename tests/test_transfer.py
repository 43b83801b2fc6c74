"""Starting from another run's encoder (rnnkit.transfer): token vectors matched by token, the
recurrent tensors of the same name and shape copied and no others, the rest left as
initialised, and one-line refusals when the runs cannot share an encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit import io
from rnnkit.cli import main
from rnnkit.data import Tokenizer, Vocab
from rnnkit.models import ClassifierConfig, SequenceClassifier
from rnnkit.pipeline import train
from rnnkit.transfer import init_from

TEXT = "好吃又便宜，下次还来。服务太差，不会再来了。" * 30


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    train("lm", root / "text.txt", root / "run", embedding_dim=6, hidden=5, layers=1,
          epochs=1, batch_size=2, bptt=9, progress=False)
    return root / "run"


def _classifier(vocab, **kw):
    cfg = dict(vocab_size=len(vocab), num_classes=2, embedding_dim=6, hidden_size=5,
               num_layers=1, bidirectional=True, seed=3)
    return SequenceClassifier(ClassifierConfig(**{**cfg, **kw}))


def test_rows_match_by_token_and_only_fitting_tensors_are_copied(lm_run):
    src, config = io.load_model(lm_run / "best")
    src_vocab = Vocab.from_json(config["vocab"])
    # Another order, one token the language model never saw, one it saw that is missing here.
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "来", "好", "馊", "，"])
    model = _classifier(vocab)
    fresh = {k: v.copy() for k, v in model.params.items()}
    report = init_from(model, vocab, Tokenizer("char").to_json(), lm_run)
    emb, src_emb = model.params["embedding.weight"], src.params["embedding.weight"]
    for i, tok in enumerate(vocab.itos):
        if tok in src_vocab.stoi and tok != "<pad>":
            np.testing.assert_array_equal(emb[i], src_emb[src_vocab.stoi[tok]])
        else:
            np.testing.assert_array_equal(emb[i], fresh["embedding.weight"][i])
    assert report["embedding_rows"] == sum(t in src_vocab.stoi for t in vocab.itos) - 1
    forward = [n for n in model.params if n.startswith("rnn.") and not n.endswith("reverse")]
    assert sorted(report["tensors"]) == sorted(["embedding.weight", *forward])
    for name in forward:
        np.testing.assert_array_equal(model.params[name], src.params[name])
    for name in model.params:
        if name.endswith("_reverse") or name.startswith("head."):
            np.testing.assert_array_equal(model.params[name], fresh[name])
    assert set(report["fresh"]) == {n for n in model.params if n.endswith("_reverse")}


def test_a_stack_whose_upper_layer_differs_takes_what_fits(lm_run, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(TEXT, encoding="utf-8")
    train("lm", text, tmp_path / "two", embedding_dim=6, hidden=5, layers=2, epochs=1,
          batch_size=2, bptt=9, progress=False)
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "好"])
    model = _classifier(vocab, num_layers=2)  # layer 1 reads 2H = 10 values, the LM's 5
    report = init_from(model, vocab, Tokenizer("char").to_json(), tmp_path / "two")
    assert "rnn.weight_hh_l1" in report["tensors"]
    assert "shape [20, 5] there, [20, 10] here" == report["fresh"]["rnn.weight_ih_l1"]


@pytest.mark.parametrize("change, message", [
    (dict(tok=Tokenizer("word")), "tokenizer has kind='char', this one 'word'"),
    (dict(tok=Tokenizer("char", lower=True)), "lower=False, this one True"),
    (dict(embedding_dim=7), "token vectors have 6 values, this model's 7 (give --embedding-dim 6)"),
    (dict(hidden_size=4), "no recurrent weight fits this model (that run: cell lstm, hidden 5"),
    (dict(cell="gru"), "no recurrent weight fits"),
])
def test_runs_that_cannot_share_an_encoder_are_refused(lm_run, change, message):
    tok = change.pop("tok", Tokenizer("char"))
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "好"])
    model = _classifier(vocab, **change)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        init_from(model, vocab, tok.to_json(), lm_run)
    if "embedding_dim" in change or "tok" in change:  # refused before anything was copied
        for k, v in model.params.items():
            np.testing.assert_array_equal(v, before[k])


def test_the_cli_fine_tunes_a_classifier_from_a_language_model(lm_run, tmp_path, capsys):
    rows = ["好吃又便宜\t1", "下次还来\t1", "服务太差\t0", "不会再来了\t0"] * 5
    data = tmp_path / "reviews.tsv"
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    common = ["train", "classify", "--train", str(data), "--tokenizer", "char", "--hidden", "5",
              "--embedding-dim", "6", "--epochs", "1", "--quiet", "--init-from", str(lm_run)]
    with pytest.warns(UserWarning, match=r"--init-from: 4 recurrent tensor\(s\) start fresh"):
        assert main([*common, "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert saved["init_from"]["from"] == str(lm_run / "best")
    assert saved["init_from"]["embedding_rows"] > 0
    with pytest.raises(SystemExit) as exc:
        main([*common[:-2], "--out", str(tmp_path / "bad"), "--init-from",
              str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    assert "nowhere: no config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # not an option of translate
        main(["train", "translate", "--train", str(data), "--out", str(tmp_path / "t"),
              "--init-from", str(lm_run)])
    assert exc.value.code == 2 and "unrecognized arguments: --init-from" in capsys.readouterr().err
