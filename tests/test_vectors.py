"""Pretrained vectors (rnnkit.vectors): every file format read to the same rows, only the wanted
rows kept (memory stays below the file's size), lower-case fallback, errors with a line, and
a tagger trained with them (frozen: the rows stay as loaded)."""

from __future__ import annotations

import json
import struct
import tracemalloc

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.data import DataError, Vocab
from rnnkit.vectors import load_into, read_vectors

WORDS = {"the": [0.1, 0.2, 0.3], "Paris": [1.0, -1.0, 0.5], "city": [0.0, 2.5, -3.0],
         "paris": [9.0, 9.0, 9.0]}


def _text(path, header: bool):
    rows = [f"{w} " + " ".join(f"{x:g}" for x in v) for w, v in WORDS.items()]
    path.write_text((f"{len(WORDS)} 3\n" if header else "") + "\n".join(rows) + "\n",
                    encoding="utf-8")
    return path


def _binary(path):
    with open(path, "wb") as f:
        f.write(f"{len(WORDS)} 3\n".encode())
        for w, v in WORDS.items():
            f.write(w.encode() + b" " + struct.pack("<3f", *v) + b"\n")
    return path


@pytest.mark.parametrize("make", [lambda p: _text(p / "glove.txt", False),
                                  lambda p: _text(p / "w2v.txt", True),
                                  lambda p: _text(p / "wiki.vec", True),
                                  lambda p: _binary(p / "w2v.bin")],
                         ids=["glove", "word2vec-text", "fasttext-vec", "word2vec-binary"])
def test_every_format_gives_the_same_rows(tmp_path, make):
    found, dim = read_vectors(make(tmp_path), {"Paris", "City", "missing"})
    assert dim == 3 and set(found) == {"Paris", "paris", "city"}
    np.testing.assert_array_equal(found["Paris"], np.float32([1.0, -1.0, 0.5]))
    vocab = Vocab(["<pad>", "<unk>", "<bos>", "<eos>", "Paris", "City", "missing"])
    weight = np.zeros((7, 3), np.float32)
    assert load_into(weight, vocab, found) == 2  # Paris itself, City through "city"
    np.testing.assert_array_equal(weight[5], np.float32([0.0, 2.5, -3.0]))
    assert not weight[6].any()


def test_only_wanted_rows_are_held(tmp_path):
    f = tmp_path / "big.vec"
    rng = np.random.default_rng(0)
    with open(f, "w") as out:
        out.write("20000 50\n")
        for i in range(20000):
            out.write(f"w{i} " + " ".join(f"{x:.5f}" for x in rng.standard_normal(50)) + "\n")
    tracemalloc.start()
    found, _ = read_vectors(f, {"w7", "w19999"})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert set(found) == {"w7", "w19999"}
    assert peak < f.stat().st_size / 10, (peak, f.stat().st_size)


def test_bad_rows_name_their_line(tmp_path):
    f = tmp_path / "bad.txt"
    f.write_text("the 0.1 0.2 0.3\nParis 1.0 2.0\n")
    with pytest.raises(DataError, match=r"bad.txt:2: 2 values, expected 3"):
        read_vectors(f, {"Paris"})
    f.write_text("the 0.1 0.2 0.3\nParis 1.0 x 2.0\n")
    with pytest.raises(DataError, match=r"bad.txt:2: not numbers after 'Paris'"):
        read_vectors(f, {"Paris"})


def test_a_tagger_trains_with_frozen_vectors(tmp_path, capsys):
    vec = _text(tmp_path / "v.txt", False)
    train = tmp_path / "train.txt"
    train.write_text("\n".join(["the/DET city/NOUN", "Paris/PROPN"] * 20) + "\n")
    dev = tmp_path / "dev.txt"
    dev.write_text("the/DET Paris/PROPN\n")
    run = tmp_path / "run"
    assert main(["train", "tag", "--train", str(train), "--dev", str(dev), "--out", str(run),
                 "--epochs", "2", "--hidden", "4", "--quiet", "--embeddings", str(vec),
                 "--freeze-embeddings", "--no-char-features"]) == 0
    capsys.readouterr()
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["model"]["embedding_dim"] == 3 and cfg["embeddings"]["rows_found"] == 3
    from rnnkit.pipeline import Task

    task = Task.load(run)
    w = task.model.params["embedding.weight"]
    np.testing.assert_array_equal(w[task.vocab.stoi["Paris"]], np.float32(WORDS["Paris"]))
    np.testing.assert_array_equal(w[task.vocab.stoi["city"]], np.float32(WORDS["city"]))
