from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.data import (
    SPECIALS,
    DataError,
    Tokenizer,
    Vocab,
    read_conllu,
    read_labelled,
    read_parallel,
    read_slash_tagged,
    read_text,
    split,
)

from .helpers import SHARED


def read_columns(path, **kw):
    from rnnkit.columns import read_columns as read

    return read(path, **kw)[0]


def test_vocab_build_encode_decode():
    v = Vocab.build([["a", "b", "a"], ["c", "a", "b"], ["d"]], min_freq=2)
    assert v.itos == list(SPECIALS) + ["a", "b"]
    assert v.encode(["a", "zzz", "b"], bos=True, eos=True) == [2, 4, 1, 5, 3]
    assert v.decode([2, 4, 5, 3, 4]) == ["a", "b"]
    assert Vocab.from_json(v.to_json()).itos == v.itos
    assert len(Vocab.build([["x", "y", "z"]], max_size=5)) == 5
    with pytest.raises(ValueError, match="min_freq must be >= 1"):
        Vocab.build([], min_freq=0)


def test_tokenizers():
    assert Tokenizer("char")("我 爱 NLP") == ["我", "爱", "N", "L", "P"]
    assert Tokenizer("word", lower=True)("Hello, World!") == ["hello", ",", "world", "!"]
    assert Tokenizer("space")("a  b\tc") == ["a", "b", "c"]
    with pytest.raises(ValueError, match="unknown tokenizer 'wordpiece'"):
        Tokenizer("wordpiece")
    with pytest.raises(ValueError, match="a bpe tokenizer is learnt from text"):
        Tokenizer("bpe")


def test_joined_word_tokens_detokenise_exactly():
    """Translations are scored on detokenised text: with ``joins`` every sentence of the
    Tatoeba file (French and English) comes back exactly, up to runs of whitespace."""
    tok = Tokenizer("word", joins=True)
    assert tok("Pourquoi me questionnes-tu ?") == ["Pourquoi", "me", "questionnes", "\uffed-",
                                                  "\uffedtu", "?"]
    assert tok.detokenize(tok("C'est « ça »!")) == "C'est « ça »!"
    assert Tokenizer.from_json(tok.to_json()).joins
    old = tok.to_json()
    del old["joins"]  # a config written before the option
    assert not Tokenizer.from_json(old).joins
    path = SHARED / "data" / "tatoeba_fra_eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    lines = path.read_text(encoding="utf-8").splitlines()[::20]
    for line in lines:
        for text in line.split("\t")[:2]:
            assert tok.detokenize(tok(text)) == " ".join(text.split()), text
    assert len(lines) > 5000


def test_split_is_seeded_and_complete():
    items = list(range(100))
    a = split(items, seed=3)
    assert a == split(items, seed=3) and a != split(items, seed=4)
    assert [len(p) for p in a] == [80, 10, 10]
    assert sorted(a[0] + a[1] + a[2]) == items


def test_readers_on_small_files(tmp_path):
    f = tmp_path / "cls.tsv"
    f.write_text("\ufeffgood film\t1\r\nbad\t0\n\n")
    assert read_labelled(f) == [("good film", "1"), ("bad", "0")]
    f = tmp_path / "pd.txt"
    f.write_text("迈向/v 充满/v 1/2/m\n\n")
    assert read_slash_tagged(f) == [(["迈向", "充满", "1/2"], ["v", "v", "m"])]
    f = tmp_path / "ner.txt"
    f.write_text("-DOCSTART- O\n\nEU B-ORG\nrejects O\n\nPeter B-PER\n")
    assert read_columns(f) == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter"], ["B-PER"])]
    f = tmp_path / "par.txt"
    f.write_text("Go.\tVa !\tCC-BY 2.0\n")
    assert read_parallel(f) == [("Go.", "Va !")]
    f = tmp_path / "gbk.txt"
    f.write_bytes("中文\t1\n".encode("gbk"))
    assert read_labelled(f, encoding="gbk") == [("中文", "1")]
    assert read_text(tmp_path / "par.txt").startswith("Go.")


@pytest.mark.parametrize("content,reader,message", [
    ("", read_labelled, "the file is empty"),
    ("just text\n", read_labelled, r":1: expected at least 2 '\\t'-separated columns"),
    ("ok\t1\nno label\t\n", read_labelled, r":2: empty label in column 1"),
    ("a/b c\n", read_slash_tagged, r":1: expected 'token/TAG', got 'c'"),
    ("only-source\n", read_parallel, r":1: expected 'source<TAB>target'"),
    ("EU\n", read_columns, r":1: one column per line; expected 'token TAG' columns"),
    ("\n\n", read_parallel, "no examples in the file"),
])
def test_reader_errors_name_file_and_line(tmp_path, content, reader, message):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(DataError, match=message) as exc:
        reader(f)
    assert str(f) in str(exc.value)


def test_wrong_encoding_names_the_line(tmp_path):
    f = tmp_path / "gbk.txt"
    f.write_bytes(b"fine\t1\n" + "中文\t1\n".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk.txt:2: not valid utf-8 .* try --encoding"):
        read_labelled(f)


def test_conllu_reader_on_ud_english_ewt():
    path = SHARED / "data" / "ud_english_ewt" / "en_ewt-ud-dev.conllu"
    if not path.is_file():
        pytest.skip("shared data not present")
    sents = read_conllu(path)
    assert len(sents) == 2001
    words, tags = sents[0]
    assert len(words) == len(tags) and all(tags)
    xpos = read_conllu(path, tag="xpos")
    assert xpos[0][0] == words and xpos[0][1] != tags


def test_conllu_multiword_tokens_and_errors(tmp_path):
    f = tmp_path / "mwt.conllu"
    rows = ["1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_", "1\tdo\tdo\tAUX\t_\t_\t0\troot\t_\t_",
            "2\tn't\tnot\tPART\t_\t_\t1\tadvmod\t_\t_"]
    f.write_text("# text = don't\n" + "\n".join(rows) + "\n\n")
    assert read_conllu(f) == [(["do", "n't"], ["AUX", "PART"])]
    f.write_text("1\tdo\tAUX\n\n")
    with pytest.raises(DataError, match=r"mwt.conllu:1: expected 10 tab-separated CoNLL-U"):
        read_conllu(f)


# ------------------------------------------------------------------ hostile files
CONLLU_ROW = "1\tcat\tcat\tNOUN\tNN\t_\t0\troot\t_\t_"
# reader, a good two-line file (str), what it parses to
GOOD = {
    "labelled": (read_labelled, "good film\t1\nbad\t0\n", [("good film", "1"), ("bad", "0")]),
    "parallel": (read_parallel, "Go.\tVa !\nHi.\tSalut !\n", [("Go.", "Va !"), ("Hi.", "Salut !")]),
    "slash": (read_slash_tagged, "猫/n 跑/v\n狗/n\n",
              [(["猫", "跑"], ["n", "v"]), (["狗"], ["n"])]),
    "columns": (read_columns, "EU B-ORG\nrejects O\n", [(["EU", "rejects"], ["B-ORG", "O"])]),
    "conllu": (read_conllu, CONLLU_ROW + "\n\n" + CONLLU_ROW + "\n",
               [(["cat"], ["NOUN"]), (["cat"], ["NOUN"])]),
    "text": (read_text, "To be,\nor not.\n", "To be,\nor not."),
}


def parse_or_error(reader, path, line: int | None):
    """The reader either parses or raises a DataError naming the file and ``line``."""
    try:
        return reader(path)
    except DataError as exc:
        assert line is not None, f"unexpected error: {exc}"
        assert f"{path}:{line}:" in str(exc), str(exc)
        return exc


@pytest.mark.parametrize("name", list(GOOD))
def test_hostile_files(name, tmp_path):
    reader, good, parsed = GOOD[name]
    f = tmp_path / f"{name}.txt"
    cases = {
        "bom": ("\ufeff" + good).encode(),
        "crlf": good.replace("\n", "\r\n").encode(),
        # (blank lines separate sentences in the column format, and are text in plain text)
        "blank lines": None if name in ("text", "columns") else
        ("\n" + good.replace("\n", "\n\n\n")).encode(),
        "no final newline": good.rstrip("\n").encode(),
    }
    for case, data in cases.items():
        if data is None:
            continue
        f.write_bytes(data)
        assert parse_or_error(reader, f, None) == parsed, case
    # each of these is an error that names its line
    lines = good.count("\n")
    for data, line in [
        (good.encode() + "中文 测试\t1\n".encode("gbk"), lines + 1),  # GBK read as UTF-8
        (good.encode() + "猫".encode()[:2], lines + 1),  # truncated inside a character
        (good.encode("utf-16"), 1),  # NUL characters
    ]:
        f.write_bytes(data)
        got = parse_or_error(reader, f, line)
        assert isinstance(got, DataError), data[:40]


def test_binary_garbage_is_an_error_naming_a_line(tmp_path):
    f = tmp_path / "garbage.bin"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    for reader, _, _ in GOOD.values():
        with pytest.raises(DataError, match=r"garbage.bin:\d+: "):
            reader(f)


def test_very_long_lines_parse(tmp_path):
    text = "word " * 200_000
    f = tmp_path / "long.tsv"
    f.write_text(f"{text}\t1\nshort\t0\n")
    assert read_labelled(f) == [(text.strip(), "1"), ("short", "0")]
    f.write_text(text + "\n" + text)
    assert read_text(f) == text + "\n" + text


def test_tabs_inside_fields_are_caught(tmp_path):
    f = tmp_path / "tabs.tsv"
    f.write_text("good film\t1\nbad\tvery bad\t0\n")
    with pytest.raises(DataError, match=r"tabs.tsv:2: 3 tab-separated columns, but line 1 has "
                                        r"2 — a tab inside a field\?"):
        read_labelled(f)
    f.write_text("Go.\tVa !\tCC\nHi\tthere.\tSalut !\tCC\n")
    with pytest.raises(DataError, match=r"tabs.tsv:2: 4 tab-separated columns, but line 1"):
        read_parallel(f)


def test_csv_quotes_hold_commas_quotes_and_newlines(tmp_path):
    f = tmp_path / "q.csv"
    f.write_text('text,label\n"Hello, world",pos\n"She said ""no""",neg\n"two\nlines",pos\n'
                 'plain,neg\n')
    assert read_labelled(f, delimiter=",", skip_header=True) == [
        ("Hello, world", "pos"), ('She said "no"', "neg"), ("two\nlines", "pos"),
        ("plain", "neg")]
    f.write_text('a,1\nb,c,1\n')
    with pytest.raises(DataError, match=r"q.csv:2: 3 comma-separated columns, .*quote the"):
        read_labelled(f, delimiter=",")
    f.write_text('a,1\n"unclosed,1\n')
    with pytest.raises(DataError, match=r"q.csv:\d+: malformed CSV"):
        read_labelled(f, delimiter=",")


def test_readers_stream_instead_of_copying_the_file(tmp_path):
    """A reader's peak memory stays far below the file's size when little of it is kept, and
    read_text peaks near one copy of the text (not the file twice)."""
    import tracemalloc

    f = tmp_path / "big.tsv"
    f.write_bytes(b"keep\t1\n" + (b" " * 99 + b"\n") * 50_000)  # 5 MB, one example
    tracemalloc.start()
    try:
        assert read_labelled(f) == [("keep", "1")]
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        g = tmp_path / "big.txt"
        g.write_text("abcdefghi\n" * 500_000)  # 5 MB
        tracemalloc.reset_peak()
        text = read_text(g)
        _, peak_text = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000, peak
    assert len(text) == 5_000_000 - 1 and peak_text < 2.5 * 5_000_000, peak_text


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["unix", "windows", "old-mac"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le", "gbk"])
def test_every_line_ending_and_utf16(tmp_path, ending, encoding):
    rows = [f"好 film {i}\t{i % 2}" for i in range(300)]
    f = tmp_path / "d.tsv"
    f.write_bytes((ending.join(rows) + ending).encode(encoding))
    got = read_labelled(f, encoding=encoding)
    assert len(got) == 300 and got[299] == ("好 film 299", "1")
    bad = rows[:5] + ["no label here"] + rows[5:]
    f.write_bytes(ending.join(bad).encode(encoding))
    with pytest.raises(DataError, match=r"d.tsv:6: "):
        read_labelled(f, encoding=encoding)


def test_a_line_past_the_limit_is_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    f = tmp_path / "one-line.tsv"
    f.write_text("ok\t1\n" + "x" * 5000 + "\t0\n")
    monkeypatch.setenv("RNNKIT_MAX_LINE_CHARS", "4000")
    with pytest.raises(DataError, match=r"one-line.tsv:2: a line of 5,003 characters, more than "
                                        r"the limit of 4,000 .*RNNKIT_MAX_LINE_CHARS"):
        read_labelled(f)
    monkeypatch.setenv("RNNKIT_MAX_LINE_CHARS", "6000")
    assert len(read_labelled(f)) == 2


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_subwords_are_learnt_saved_and_give_the_text_back_exactly(kind):
    pytest.importorskip("sentencepiece")
    from rnnkit.data import Tokenizer

    path = SHARED / "data" / "tatoeba_fra_eng" / "fra.txt"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    text = path.read_text(encoding="utf-8")
    french = [line.split("\t")[1] for line in text.splitlines()[:3000]]
    tok = Tokenizer.train(kind, french, 500)
    assert tok.to_json()["model"] and len(tok.pieces()) <= 500
    again = Tokenizer.from_json(json.loads(json.dumps(tok.to_json())))
    odd = ["  Où est la gare ?  ", "火车站在哪里？ 😀", "", "a\tb", "ÉCOLE-ÉTÉ!!"]
    for line in french[:500] + odd:
        pieces = again(line)
        assert again.detokenize(pieces) == line and pieces == tok(line)
    assert len(tok("Je ne sais pas.")) < len("Je ne sais pas.")  # subwords, not characters
    assert Tokenizer.train(kind, french, 500).model == tok.model  # deterministic
    with pytest.raises(ValueError, match="at least 300 pieces"):
        Tokenizer.train(kind, french, 100)
