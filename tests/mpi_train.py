"""Run by tests/test_distributed.py, alone or under ``mpiexec -n K``: trains every model type a
few steps in float64 (no dropout: the same arithmetic whatever K) and has rank 0 save every
weight and the dev metrics to OUT.npz. Usage: python tests/mpi_train.py OUT_DIR"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rnnkit.distributed import world
from rnnkit.models import (
    ClassifierConfig,
    LanguageModel,
    LMConfig,
    RegressorConfig,
    Seq2Seq,
    Seq2SeqConfig,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
    StepClassifier,
    StepClassifierConfig,
    TaggerConfig,
)
from rnnkit.train import TrainConfig, Trainer


def cases(rng):
    """(name, model, train examples, dev examples, TrainConfig options) for each model type."""
    f64 = dict(dtype="float64", seed=3)
    ragged = [rng.integers(4, 12, rng.integers(2, 9)).tolist() for _ in range(40)]
    yield ("classify", SequenceClassifier(ClassifierConfig(
        vocab_size=12, num_classes=3, embedding_dim=4, hidden_size=5, cell="gru",
        dropout=0.0, pooling="mean", **f64)),
        [(s, len(s) % 3) for s in ragged[:30]], [(s, len(s) % 3) for s in ragged[30:]], {})
    tagged = [(s, [t % 3 for t in s], [[t % 5 + 4, 4 + t % 2] for t in s]) for s in ragged]
    yield ("tag", SequenceTagger(TaggerConfig(
        vocab_size=12, num_tags=3, embedding_dim=4, hidden_size=5, num_layers=2, cell="lstm",
        dropout=0.0, char_vocab_size=9, char_embedding_dim=3, char_hidden_size=2, crf=True,
        tag_names=["A", "B", "C"], **f64)), tagged[:30], tagged[30:], {})
    stream = rng.integers(4, 12, 400)
    yield ("lm", LanguageModel(LMConfig(vocab_size=12, embedding_dim=4, hidden_size=5,
                                        num_layers=2, dropout=0.0, **f64)),
           LanguageModel.windows(stream[:300], 6, 7), LanguageModel.windows(stream[300:], 6, 7),
           dict(batch_size=1, shuffle=False, bucket=False))
    pairs = [(s, [t % 5 + 4 for t in s[::-1]]) for s in ragged]
    yield ("translate", Seq2Seq(Seq2SeqConfig(
        src_vocab_size=12, tgt_vocab_size=9, embedding_dim=4, hidden_size=6, cell="gru",
        attention="general", bidirectional_encoder=True, input_feed=True, **f64)),
        pairs[:30], pairs[30:], {})
    xs = [rng.normal(size=(6, 3)) for _ in range(40)]
    yield ("regress", SequenceRegressor(RegressorConfig(input_size=3, hidden_size=5, **f64)),
           [(x, x.sum(axis=0)[:1]) for x in xs[:30]], [(x, x.sum(axis=0)[:1]) for x in xs[30:]],
           {})
    seqs = [rng.integers(0, 4, 7) for _ in range(40)]
    yield ("steps", StepClassifier(StepClassifierConfig(num_symbols=4, num_classes=4,
                                                        hidden_size=5, **f64)),
           [(s, s[::-1].copy()) for s in seqs[:30]], [(s, s[::-1].copy()) for s in seqs[30:]],
           {})


def main(out: Path) -> None:
    w = world()
    weights, metrics = {}, {}
    for name, model, train, dev, options in cases(np.random.default_rng(0)):
        config = TrainConfig(**{**dict(epochs=2, batch_size=7, lr=0.01, progress=False,
                                       seed=1), **options})
        history = Trainer(model, train, dev, config, out / name).fit()
        weights.update({f"{name}/{k}": v for k, v in model.params.items()})
        metrics[name] = {k: v for k, v in history[-1].items() if k.startswith("dev_")}
    if w.rank == 0:
        np.savez(out / "weights.npz", **weights)
        (out / "metrics.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
