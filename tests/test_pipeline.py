"""Seconds-long smoke runs of every task command on real data (../shared/data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.cli import main

from .helpers import SHARED

DATA = SHARED / "data"


def need(path):
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def test_classify_train_predict_eval(tmp_path, capsys):
    data = need(DATA / "uci_sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
    run = tmp_path / "cls"
    assert main(["train", "classify", "--train", str(data), "--out", str(run), "--epochs", "2",
                 "--hidden", "16", "--embedding-dim", "16", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dev_accuracy" in out and "test (best): loss" in out and "macro_f1" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_examples"] == 800 and 0 <= summary["test"]["accuracy"] <= 1
    inp = tmp_path / "in.txt"
    inp.write_text("great phone\nＸＹＺ never seen characters ☃\n")
    assert main(["predict", str(run), str(inp)]) == 0
    assert capsys.readouterr().out.split() in (["0", "0"], ["0", "1"], ["1", "0"], ["1", "1"])
    assert main(["eval", str(run), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"loss", "accuracy", "macro_f1"}


def test_tag_conllu_with_char_features(tmp_path, capsys):
    dev = need(DATA / "ud_english_ewt" / "en_ewt-ud-dev.conllu")
    run = tmp_path / "tag"
    assert main(["train", "tag", "--train", str(dev), "--out", str(run), "--epochs", "1",
                 "--hidden", "16", "--embedding-dim", "16", "--word-dropout", "0.25",
                 "--char-dim", "7", "--char-hidden", "9", "--quiet"]) == 0
    capsys.readouterr()
    inp = tmp_path / "in.txt"
    inp.write_text("The cat sat on the mat .\nUnseenword xyzzy\n")
    assert main(["predict", str(run), str(inp)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("The/") and len(lines[0].split()) == 7
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert cfg["task"] == "tag" and cfg["chars"] and cfg["labels"]
    assert cfg["model"]["word_dropout"] == 0.25 and cfg["model"]["unk_idx"] == 1
    assert cfg["model"]["char_embedding_dim"] == 7 and cfg["model"]["char_hidden_size"] == 9
    conf = tmp_path / "confusion.png"
    assert main(["eval", str(run), "--data", str(dev), "--plot", str(conf), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert conf.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from rnnkit.data import read_conllu
    from rnnkit.pipeline import Task

    task = Task.load(run)
    raw = read_conllu(dev)
    m = task.confusion(raw)
    assert m.sum() == sum(len(t) for _, t in raw)
    assert np.trace(m) / m.sum() == pytest.approx(metrics["accuracy"])


def test_language_model_train_generate_eval(tmp_path, capsys):
    text = need(DATA / "tinyshakespeare" / "input.txt")
    small = tmp_path / "small.txt"
    small.write_text(text.read_text()[:20000])
    run = tmp_path / "lm"
    assert main(["train", "lm", "--train", str(small), "--out", str(run), "--epochs", "1",
                 "--hidden", "16", "--layers", "1", "--embedding-dim", "8", "--bptt", "16",
                 "--batch-size", "8", "--quiet"]) == 0
    assert "dev_bits_per_char" in capsys.readouterr().out
    assert main(["generate", str(run), "--prompt", "ROMEO:", "--length", "40", "--seed",
                 "3"]) == 0
    first = capsys.readouterr().out
    assert first.startswith("ROMEO:") and len(first.rstrip("\n")) >= 46
    main(["generate", str(run), "--prompt", "ROMEO:", "--length", "40", "--seed", "3"])
    assert capsys.readouterr().out == first
    assert main(["eval", str(run), "--data", str(small), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["perplexity"] > 1 and metrics["bits_per_char"] > 0
    assert metrics["unknown"] == 0 and metrics["tokens"] > 1000
    odd = tmp_path / "odd.txt"
    odd.write_text("\n火山火" + text.read_text()[:3000])  # the first token is no target
    assert main(["eval", str(run), "--data", str(odd), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unknown"] == 3
    with pytest.warns(UserWarning, match="1 token.s. the model never saw in training, read "
                      "as <unk>: '火'"):
        assert main(["generate", str(run), "--prompt", "火ROMEO:", "--length", "3000",
                     "--temperature", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert not any(s in out for s in ("<pad>", "<unk>", "<bos>", "<eos>"))
    assert main(["generate", str(run), "--top-p", "0.5", "--length", "20"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["generate", str(run), "--top-p", "0", "--length", "20"])
    assert exc.value.code == 2 and "top_p must be in (0, 1]" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["train", "classify", "--train", "/nonexistent.tsv", "--out", "x"], "no such file"),
    (["eval", "/nonexistent-run", "--data", "x"], "not an rnnkit checkpoint"),
])
def test_task_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_generate_refuses_a_classifier(tmp_path, capsys):
    data = need(DATA / "uci_sentiment_labelled_sentences" / "yelp_labelled.txt")
    run = tmp_path / "cls"
    main(["train", "classify", "--train", str(data), "--out", str(run), "--epochs", "1",
          "--hidden", "8", "--embedding-dim", "8", "--quiet"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["generate", str(run)])
    assert "only a language model generates" in capsys.readouterr().err


def _first_pairs(tmp_path, n: int):
    """The first ``n`` Tatoeba English–French pairs, as a file of the run's format."""
    fra = need(DATA / "tatoeba_fra_eng" / "fra.txt")
    small = tmp_path / "fra.txt"
    with open(fra, encoding="utf-8") as f:
        small.write_text("".join(next(f) for _ in range(n)))
    return small


def test_translate_train_predict_eval(tmp_path, capsys):
    from rnnkit.pipeline import Task

    small = _first_pairs(tmp_path, 600)
    run = tmp_path / "tr"
    assert main(["train", "translate", "--train", str(small), "--out", str(run), "--epochs",
                 "1", "--hidden", "16", "--embedding-dim", "8", "--lower", "--attention",
                 "additive", "--beam-size", "2", "--quiet"]) == 0
    assert "bleu" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test_beam_size"] == 2 and "bleu" in summary["test"]
    inp = tmp_path / "in.txt"
    inp.write_text("I am happy.\n\nUnknownword!\n")
    assert main(["predict", str(run), str(inp), "--beam-size", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == "" and lines[0] and lines[2]  # blank in, blank out
    assert main(["predict", str(run), str(inp), "--beam-size", "3", "--n-best", "2"]) == 0
    nbest = capsys.readouterr().out.splitlines()
    assert len(nbest) == 6 and nbest[2:4] == ["\tnan", "\tnan"]  # 2 per line, blank: none
    assert nbest[0].split("\t")[0] == lines[0]
    assert float(nbest[0].split("\t")[1]) >= float(nbest[1].split("\t")[1])
    with pytest.raises(SystemExit):
        main(["predict", str(run), str(inp), "--n-best", "2"])
    assert "--n-best 2 needs a beam at least as wide" in capsys.readouterr().err
    history = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"dev_bleu", "dev_chrf"} <= set(history[0])  # selected on dev BLEU
    assert Task.load(run).model.primary_metric == ("bleu", True)
    heat = tmp_path / "heat.png"
    assert main(["predict", str(run), str(inp), "--plot", str(heat)]) == 0
    greedy = capsys.readouterr().out.splitlines()[0]
    assert heat.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    task = Task.load(run)
    src, out, w = task.attention("I am happy.")
    assert w.shape == (len(out), len(src)) and np.allclose(w.sum(axis=1), 1)
    words = [t for t in out if t != "<eos>"]
    assert task.tokenizer.detokenize(words) == greedy
    assert task.tokenizer.joins and "\uffed" not in greedy  # word tokens keep their spacing
    assert main(["eval", str(run), "--data", str(small), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"loss", "bleu", "chrf", "bleu_tokenize"} and metrics["chrf"] >= 0
    assert metrics["bleu_tokenize"] == "13a"  # French
    assert main(["eval", str(run), "--data", str(small), "--json", "--bleu-tokenize",
                 "char"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu_tokenize"] == "char"


def test_chunk_f1_for_bio_and_bmes(tmp_path, capsys):
    from rnnkit.pipeline import chunk_scheme

    assert chunk_scheme(["B-PER", "I-PER", "O"]) == "bio"
    assert chunk_scheme(["b", "m", "e", "s"]) == "bmes"
    assert chunk_scheme(["NOUN", "VERB"]) is None
    ner = tmp_path / "ner.txt"
    ner.write_text("\n\n".join("Peter B-PER\nlives O\nin O\nBerlin B-LOC\n" for _ in range(30)))
    run = tmp_path / "ner"
    assert main(["train", "tag", "--train", str(ner), "--format", "columns", "--out", str(run),
                 "--epochs", "3", "--hidden", "8", "--embedding-dim", "8", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(ner), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["chunk_f1"] <= 1.0 and "accuracy" in metrics
    seg = tmp_path / "seg.txt"
    seg.write_text("\n".join("迈/b 向/e 充/b 满/e 希/b 望/e 的/s" for _ in range(30)) + "\n")
    run2 = tmp_path / "seg"
    assert main(["train", "tag", "--train", str(seg), "--format", "slash", "--out", str(run2),
                 "--epochs", "3", "--hidden", "8", "--embedding-dim", "8", "--quiet",
                 "--bigram-features", "--no-char-features"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run2), "--data", str(seg), "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["chunk_f1"] <= 1.0
    cfg = json.loads((run2 / "best" / "config.json").read_text())
    assert cfg["chars"] is None and "迈 向" in cfg["bigrams"] and "<s> 迈" in cfg["bigrams"]
    assert cfg["model"]["bigram_vocab_size"] == len(cfg["bigrams"])
    inp = tmp_path / "chars.txt"
    inp.write_text("迈 向 未 知\n")  # unseen characters and bigrams become <unk>
    assert main(["predict", str(run2), str(inp)]) == 0
    assert capsys.readouterr().out.split()[0].startswith("迈/")


def test_cli_classify_with_character_bigrams(tmp_path, capsys):
    reviews = tmp_path / "reviews.tsv"
    reviews.write_text("".join(f"{t}\t{y}\n" for t, y in (("很好用", "1"), ("不好用", "0"),
                                                          ("非常好", "1"), ("太差了", "0")) * 8),
                       encoding="utf-8")
    run = tmp_path / "clf"
    assert main(["train", "classify", "--train", str(reviews), "--dev", str(reviews),
                 "--out", str(run), "--tokenizer", "char", "--bigram-features", "--epochs", "2",
                 "--hidden", "8", "--embedding-dim", "8", "--quiet"]) == 0
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert "好 用" in cfg["bigrams"] and cfg["model"]["bigram_vocab_size"] == len(cfg["bigrams"])
    capsys.readouterr()
    assert main(["eval", str(run), "--data", str(reviews), "--json"]) == 0
    assert 0.0 <= json.loads(capsys.readouterr().out)["accuracy"] <= 1.0
    inp = tmp_path / "new.txt"
    inp.write_text("好用\n从未见过\n\n", encoding="utf-8")  # unseen characters, an empty line
    assert main(["predict", str(run), str(inp)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and set(lines) <= {"0", "1"}
    out = tmp_path / "clf.onnx"
    assert main(["export", str(run), "--onnx", str(out)]) == 0
    assert out.is_file()


def test_recurrent_options_reach_the_saved_model(tmp_path, capsys):
    """Every cell option from the command line: trained, saved in config.json, loaded."""
    data = need(DATA / "uci_sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
    run = tmp_path / "cls"
    assert main(["train", "classify", "--train", str(data), "--out", str(run), "--epochs", "1",
                 "--hidden", "8", "--embedding-dim", "8", "--layers", "2", "--quiet",
                 "--cell", "gru-after", "--chrono", "20", "--weight-drop", "0.2",
                 "--variational", "--dropout", "0.3", "--init-state", "learned"]) == 0
    capsys.readouterr()
    cfg = json.loads((run / "best" / "config.json").read_text())["model"]
    assert (cfg["cell"], cfg["chrono"], cfg["weight_drop"], cfg["variational"],
            cfg["init_state"]) == ("gru-after", 20, 0.2, True, "learned")
    from rnnkit.pipeline import Task

    layer = Task.load(run).model.layers["rnn"]
    assert layer.reset_after and layer.weight_drop == 0.2 and "h0" in layer.params
    assert main(["predict", str(run), str(data)]) == 0


def test_step_extras_from_the_command_line(tmp_path, capsys):
    """Layer norm, zoneout and recurrent dropout: trained, saved, loaded, predicting."""
    data = need(DATA / "uci_sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
    run = tmp_path / "ln"
    assert main(["train", "classify", "--train", str(data), "--out", str(run), "--epochs", "1",
                 "--hidden", "8", "--embedding-dim", "8", "--quiet", "--cell", "lstm",
                 "--layer-norm", "--zoneout", "0.1", "--zoneout-cell", "0.4",
                 "--recurrent-dropout", "0.25"]) == 0
    capsys.readouterr()
    cfg = json.loads((run / "best" / "config.json").read_text())["model"]
    assert (cfg["layer_norm"], cfg["zoneout"], cfg["zoneout_cell"],
            cfg["recurrent_dropout"]) == (True, 0.1, 0.4, 0.25)
    from rnnkit.pipeline import Task

    layer = Task.load(run).model.layers["rnn"]
    assert layer.layer_norm and layer.zoneout_c == 0.4 and "ln_weight_c_l0" in layer.params
    assert main(["predict", str(run), str(data)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1000


@pytest.mark.parametrize("extra,message", [
    (["--weight-drop", "1"], "argument --weight-drop: expected a number in [0, 1), got 1.0"),
    (["--zoneout-cell", "0.2", "--cell", "gru"], "zoneout_cell is an LSTM option"),
    (["--peepholes", "--cell", "gru"], "peepholes is an LSTM option; cell 'gru' has none"),
    (["--forget-bias", "1", "--chrono", "9"], "not allowed with argument --forget-bias"),
])
def test_recurrent_option_errors(extra, message, tmp_path, capsys):
    data = need(DATA / "uci_sentiment_labelled_sentences" / "amazon_cells_labelled.txt")
    with pytest.raises(SystemExit) as exc:
        main(["train", "classify", "--train", str(data), "--out", str(tmp_path / "r"),
              "--quiet"] + extra)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


UNER_SENTENCES = [
    [("上海", "B-ORG"), ("交通", "I-ORG"), ("大学", "I-ORG"), ("位于", "O"), ("中国", "B-LOC")],
    [("张", "B-PER"), ("三", "I-PER"), ("去", "O"), ("北京", "B-LOC")],
    [("李", "B-PER"), ("四", "I-PER"), ("在", "O"), ("清华", "B-ORG"), ("大学", "I-ORG")],
]


def _uner(path, sentences, repeat):
    lines = []
    for i in range(repeat):
        for k, s in enumerate(sentences):
            lines.append(f"# sent_id = s{i}-{k}")
            lines.append("# text = " + "".join(w for w, _ in s))
            lines += [f"{j}\t{w}\t{t}\t-\t-" for j, (w, t) in enumerate(s, 1)]
            lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_a_universal_ner_file_trains_with_a_crf_and_reports_entities(tmp_path, capsys):
    """No --format: the .iob2 file's id, token and tag columns are found, a CRF tagger trains,
    selects on entity F1, and eval reports precision, recall and F1 per type; a tag the run
    never saw is scored as an error with a warning, not refused."""
    data = _uner(tmp_path / "zh_pud-ud-test.iob2", UNER_SENTENCES, 20)
    run = tmp_path / "ner"
    assert main(["train", "tag", "--train", str(data), "--dev", str(data), "--out", str(run),
                 "--epochs", "4", "--hidden", "16", "--embedding-dim", "16", "--quiet",
                 "--crf", "--lr", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "the best, epoch" in out and "dev_chunk_f1" in out
    cfg = json.loads((run / "best" / "config.json").read_text())
    assert (cfg["data"]["token_column"], cfg["data"]["tag_column"]) == (1, 2)
    assert cfg["model"]["crf"] and cfg["model"]["scheme"] == "bio"
    assert main(["eval", str(run), "--data", str(data)]) == 0
    report = capsys.readouterr().out
    assert "chunk_f1:" in report and "precision" in report
    assert {line.split()[0] for line in report.splitlines()[-3:]} == {"LOC", "ORG", "PER"}
    other = _uner(tmp_path / "other.iob2", [[("王", "B-MISC"), ("去", "O")]], 1)
    with pytest.warns(UserWarning, match="1 tag\\(s\\) not seen in training.*'B-MISC'"):
        assert main(["eval", str(run), "--data", str(other), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["chunk_recall"] == 0.0 and metrics["per_type"]["MISC"]["support"] == 1
    assert metrics["accuracy"] <= 0.5


def test_raw_chinese_is_tagged_end_to_end(tmp_path, capsys):
    """A character tagger (tokens of one character: detected) reads raw lines character by
    character; a word tagger is fed words by --segment-with; blank lines stay blank; a word
    tagger given a long unsegmented line warns."""
    ner = _uner(tmp_path / "chars.iob2", [[(c, t) for w, tag in s for c, t in zip(
        w, [tag] + [tag.replace("B-", "I-")] * (len(w) - 1), strict=True)]
        for s in UNER_SENTENCES], 10)
    run = tmp_path / "ner"
    assert main(["train", "tag", "--train", str(ner), "--out", str(run), "--epochs", "2",
                 "--hidden", "8", "--embedding-dim", "8", "--quiet"]) == 0
    capsys.readouterr()
    lines = tmp_path / "raw.txt"
    lines.write_text("张三去北京\n\n李四在清华大学\n", encoding="utf-8")
    assert main(["predict", str(run), str(lines)]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].split()[0].startswith("张/") and len(out[0].split()) == 5
    assert out[1] == "" and len(out[2].split()) == 7
    seg = tmp_path / "seg.txt"
    seg.write_text("\n".join("张/b 三/e 去/s 北/b 京/e" for _ in range(30)) + "\n",
                   encoding="utf-8")
    seg_run = tmp_path / "seg"
    assert main(["train", "tag", "--train", str(seg), "--out", str(seg_run), "--epochs", "3",
                 "--hidden", "8", "--embedding-dim", "8", "--quiet", "--lr", "0.02"]) == 0
    words = tmp_path / "words.txt"
    words.write_text("\n".join("张三/nr 去/v 北京/ns" for _ in range(30)) + "\n",
                     encoding="utf-8")
    word_run = tmp_path / "words"
    assert main(["train", "tag", "--train", str(words), "--out", str(word_run), "--epochs",
                 "2", "--hidden", "8", "--embedding-dim", "8", "--quiet"]) == 0
    capsys.readouterr()
    long = tmp_path / "long.txt"
    long.write_text("张三去北京张三去北京\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="without spaces"):
        assert main(["predict", str(word_run), str(long)]) == 0
    assert len(capsys.readouterr().out.split()) == 1
    assert main(["predict", str(word_run), str(long), "--segment-with", str(seg_run)]) == 0
    assert len(capsys.readouterr().out.split()) > 1
    with pytest.raises(SystemExit):
        main(["predict", str(word_run), str(long), "--segment-with", str(word_run)])


def test_plots_of_chinese_text_use_a_cjk_font_or_warn_once(tmp_path, monkeypatch):
    import warnings

    from rnnkit import plots

    monkeypatch.setattr(plots, "_warned", False)
    monkeypatch.setattr(plots, "_cjk_family", lambda: None)
    with pytest.warns(UserWarning, match="no CJK font found"):
        plots.plot_attention(["北", "京"], ["Bei", "jing"], [[1, 0], [0, 1]], tmp_path / "a.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once only
        plots.plot_attention(["北", "京"], ["Bei", "jing"], [[1, 0], [0, 1]], tmp_path / "b.png")
    from matplotlib import font_manager

    family = font_manager.fontManager.ttflist[0].name  # any installed font stands in
    monkeypatch.setattr(plots, "_cjk_family", lambda: family)
    seen = []
    real = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: seen.append(
        __import__("matplotlib").rcParams["font.sans-serif"][0]) or real(fig, path))
    plots.plot_confusion(["名词", "动词"], [[3, 1], [0, 2]], tmp_path / "c.png")
    assert seen == [family]


def test_translation_sides_are_cut_each_their_own_way(tmp_path, capsys):
    pytest.importorskip("sentencepiece")
    from rnnkit.pipeline import Task

    small = _first_pairs(tmp_path, 800)
    run = tmp_path / "tr"
    assert main(["train", "translate", "--train", str(small), "--out", str(run), "--epochs",
                 "1", "--hidden", "16", "--embedding-dim", "8", "--src-tokenizer", "char",
                 "--tgt-tokenizer", "bpe", "--tgt-vocab-size", "400", "--quiet"]) == 0
    task = Task.load(run)
    assert (task.tokenizer.kind, task.tgt_tokenizer.kind) == ("char", "bpe")
    assert task.tgt_vocab.itos[4:] == [p for p in task.tgt_tokenizer.pieces()
                                       if p not in task.tgt_vocab.itos[:4]]
    pairs = [line.split("\t")[:2] for line in small.read_text().splitlines()]
    assert task.encode(pairs[:1])[0][1] == task.tgt_vocab.encode(task.tgt_tokenizer(pairs[0][1]))
    assert len(task.encode(pairs[:1])[0][0]) == len(pairs[0][0].replace(" ", ""))
    inp = tmp_path / "in.txt"
    inp.write_text("I am happy.\n")
    assert main(["predict", str(run), str(inp)]) == 0
    assert "▁" not in capsys.readouterr().out  # subwords decoded


def test_a_word_tokenizer_on_unsegmented_chinese_warns(tmp_path):
    pairs = tmp_path / "zh.txt"
    pairs.write_text("".join(f"I have something to show you {i}.\t我有东西想给你看看第{i}个\n"
                             for i in range(60)))
    with pytest.warns(UserWarning, match="target text holds Chinese or Japanese without "
                      "spaces.*--tgt-tokenizer char, bpe or unigram"):
        main(["train", "translate", "--train", str(pairs), "--out", str(tmp_path / "r"),
              "--epochs", "1", "--hidden", "8", "--embedding-dim", "4", "--quiet"])
    labelled = tmp_path / "zh.tsv"
    labelled.write_text("".join(f"我有东西想给你看看第{i}个\t{i % 2}\n" for i in range(60)))
    with pytest.warns(UserWarning, match="the text holds Chinese.*use --tokenizer char"):
        main(["train", "classify", "--train", str(labelled), "--out", str(tmp_path / "c"),
              "--epochs", "1", "--hidden", "8", "--embedding-dim", "4", "--quiet"])
