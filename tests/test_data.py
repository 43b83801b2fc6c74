from __future__ import annotations

import pytest

from rnnkit.data import (
    SPECIALS,
    DataError,
    Tokenizer,
    Vocab,
    read_columns,
    read_conllu,
    read_labelled,
    read_parallel,
    read_slash_tagged,
    read_text,
    split,
)

from .helpers import SHARED


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
    with pytest.raises(ValueError, match="unknown tokenizer 'bpe'"):
        Tokenizer("bpe")


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
    ("EU\n", read_columns, r":1: expected 'token TAG' columns"),
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
