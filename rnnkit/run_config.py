"""What a run's config.json holds beside the model, checked field by field before anything is
built from it: a checkpoint is untrusted input.

    check(config, model, where)   # ValueError naming the file and the field, or nothing

The task's vocabularies must be lists of distinct strings that start with the special tokens
and match the model's embedding rows; labels a list of strings, one per output; the tokenizer
one of rnnkit's by name with its default pattern (a checkpoint never supplies a regular
expression: ``(a|a)+$`` took 32.7 s on a 29-character line); data options of their types.
"""

from __future__ import annotations

from . import data as D

_DEFAULT_PATTERN = D.Tokenizer().pattern
_DATA_TYPES = {"format": (str, type(None)), "encoding": str, "text_column": int,
               "label_column": int, "tag": str, "token_column": (int, type(None)),
               "tag_column": (int, type(None)), "split_seed": int, "batch_size": int,
               "bptt": int, "bleu_tokenize": str}


def _strings(value, field: str, where: str, distinct: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}: '{field}' must be a list of strings, got "
                         f"{type(value).__name__}")
    if distinct and len(set(value)) != len(value):
        raise ValueError(f"{where}: '{field}' lists a string twice")
    return value


def _vocab(config: dict, field: str, size: int, where: str) -> None:
    tokens = _strings(config.get(field), field, where)
    if tokens[:len(D.SPECIALS)] != list(D.SPECIALS):
        raise ValueError(f"{where}: '{field}' must start with {list(D.SPECIALS)}")
    if len(tokens) != size:
        raise ValueError(f"{where}: '{field}' has {len(tokens)} entries, the model's embedding "
                         f"{size} rows")


def _tokenizer(tok, field: str, where: str) -> None:
    if not isinstance(tok, dict):
        raise ValueError(f"{where}: '{field}' must be an object, got {type(tok).__name__}")
    if tok.get("kind") not in D.TOKENIZER_KINDS:
        raise ValueError(f"{where}: unknown {field} kind {tok.get('kind')!r}; expected one "
                         f"of {D.TOKENIZER_KINDS}")
    for flag in ("lower", "joins"):
        if not isinstance(tok.get(flag, False), bool):
            raise ValueError(f"{where}: {field} '{flag}' must be true or false")
    if tok.get("pattern", _DEFAULT_PATTERN) != _DEFAULT_PATTERN:
        raise ValueError(f"{where}: the {field}'s pattern is not rnnkit's; a checkpoint "
                         "names its tokenizer, it does not supply a regular expression")
    if (tok["kind"] in D.SUBWORD_KINDS) != isinstance(tok.get("model"), str):
        raise ValueError(f"{where}: a {field} has a subword 'model' (base64) exactly when its "
                         f"kind is {' or '.join(D.SUBWORD_KINDS)}")


def check(config: dict, model, where: str) -> None:
    """Raise ValueError unless ``config`` is a consistent run configuration for ``model``."""
    task = config.get("task")
    c = model.config
    _tokenizer(config.get("tokenizer"), "tokenizer", where)
    if task == "translate" and config.get("tgt_tokenizer") is not None:
        _tokenizer(config["tgt_tokenizer"], "tgt_tokenizer", where)
    if task == "translate":
        _vocab(config, "vocab", c.src_vocab_size, where)
        _vocab(config, "tgt_vocab", c.tgt_vocab_size, where)
    else:
        _vocab(config, "vocab", c.vocab_size, where)
    if task in ("classify", "tag"):
        labels = _strings(config.get("labels"), "labels", where)
        outputs = c.num_classes if task == "classify" else c.num_tags
        if len(labels) != outputs:
            raise ValueError(f"{where}: {len(labels)} labels for {outputs} outputs")
    for field, size in (("chars", getattr(c, "char_vocab_size", 0)),
                        ("bigrams", getattr(c, "bigram_vocab_size", 0))):
        if size:
            tokens = _strings(config.get(field), field, where)
            if len(tokens) != size:
                raise ValueError(f"{where}: '{field}' has {len(tokens)} entries, the model "
                                 f"{size}")
        elif config.get(field) is not None:
            raise ValueError(f"{where}: '{field}' given, but the model has no such features")
    options = config.get("data", {})
    if not isinstance(options, dict):
        raise ValueError(f"{where}: 'data' must be an object")
    for key, value in options.items():
        kind = _DATA_TYPES.get(key)
        if kind is None:
            raise ValueError(f"{where}: unknown data option {key!r}")
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ValueError(f"{where}: data option {key!r} has the wrong type "
                             f"({type(value).__name__})")
