"""Starting a model from a trained run's encoder: fine-tuning, as ULMFiT (Howard & Ruder 2018)
starts a classifier from a language model.

What transfers is the encoder every rnnkit model shares: the token table ``embedding.weight``
(V, E) and the recurrent stack ``rnn.*``. The two runs' vocabularies differ, so the table is
copied row by row, matched by token: a token the source run never saw keeps its fresh
initialisation. A recurrent tensor is copied when the source has one of the same name and
shape — a bidirectional classifier started from a (forward) language model takes its forward
direction's layer 0 and leaves the reverse direction fresh; a layer above whose input size
differs (2H from a bidirectional layer below, H in the source) stays fresh too. Heads, CRFs,
character and bigram tables are the new task's own and are never copied.
"""

from __future__ import annotations

from . import io
from .data import PAD, Vocab

ENCODER = ("embedding.", "rnn.")


def init_from(model, vocab: Vocab, tokenizer: dict, source) -> dict:
    """Copy the encoder of the run at ``source`` into ``model`` (whose token ids are
    ``vocab``'s, read with ``tokenizer`` — a Tokenizer's JSON). Returns what was copied:
    ``{"from", "embedding_rows", "tensors", "fresh"}`` (fresh: encoder tensors left as
    initialised, each with the reason). Raises ValueError, naming the flag to change, when
    the runs cannot share an encoder (another tokenizer, embedding size or cell)."""
    from .pipeline import checkpoint_dir  # the pipeline imports this module

    directory = checkpoint_dir(source)
    src, config = io.load_model(directory)
    where = f"--init-from {source}"
    src_tok = config.get("tokenizer") or {}
    for key in ("kind", "lower"):
        if src_tok.get(key) != tokenizer.get(key):
            raise ValueError(f"{where}: that run's tokenizer has {key}={src_tok.get(key)!r}, "
                             f"this one {tokenizer.get(key)!r}: token ids would not match "
                             f"(give the same --tokenizer/--lower)")
    if "vocab" not in config or "embedding.weight" not in src.params:
        raise ValueError(f"{where}: that checkpoint has no token embedding to start from")
    dst_emb, src_emb = model.params["embedding.weight"], src.params["embedding.weight"]
    if dst_emb.shape[1] != src_emb.shape[1]:
        raise ValueError(f"{where}: its token vectors have {src_emb.shape[1]} values, this "
                         f"model's {dst_emb.shape[1]} (give --embedding-dim "
                         f"{src_emb.shape[1]})")
    src_ids = Vocab.from_json(config["vocab"]).stoi
    rows = [(i, src_ids[t]) for i, t in enumerate(vocab.itos) if t != PAD and t in src_ids]
    if rows:
        dst_rows, src_rows = zip(*rows, strict=True)
        dst_emb[list(dst_rows)] = src_emb[list(src_rows)]
    copied, fresh = ["embedding.weight"], {}
    for name, dst in model.params.items():
        if not name.startswith("rnn."):
            continue
        if name not in src.params:
            fresh[name] = "not in that run's model"
        elif src.params[name].shape != dst.shape:
            fresh[name] = (f"shape {list(src.params[name].shape)} there, "
                           f"{list(dst.shape)} here")
        else:
            dst[...] = src.params[name]
            copied.append(name)
    if len(copied) == 1 and any(n.startswith("rnn.") for n in model.params):
        raise ValueError(f"{where}: no recurrent weight fits this model (that run: "
                         f"{_describe(src.config)}; give the same --cell, --hidden and "
                         f"--embedding-dim)")
    return {"from": str(directory), "embedding_rows": len(rows), "vocab_size": len(vocab),
            "tensors": copied, "fresh": fresh}


def _describe(cfg) -> str:
    return (f"cell {cfg.cell}, hidden {cfg.hidden_size}, {cfg.num_layers} layer(s), "
            f"{'bi' if getattr(cfg, 'bidirectional', False) else 'uni'}directional")
