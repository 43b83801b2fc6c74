"""Column files (rnnkit.columns): the columns detected in CoNLL-2003, UNER and plain IOB2 files,
comments and -DOCSTART- skipped, and wrong column choices refused with file and line."""

from __future__ import annotations

import pytest

from rnnkit.columns import MAX_TAGS, read_columns
from rnnkit.data import DataError

UNER = """# sent_id = zh_pud_1
# text = 上海交通大学位于中国上海
1\t上海\tB-ORG\t-\t-
2\t交通\tI-ORG\t-\t-
3\t大学\tI-ORG\t-\t-
4\t位于\tO\t-\t-
5\t中国\tB-LOC\t-\t-

# sent_id = zh_pud_2
# text = 张三去北京
1\t张三\tB-PER\t-\t-
2\t去\tO\t-\t-
3\t北京\tB-LOC\t-\t-
"""

CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
# NN I-NP O

Peter NNP B-NP B-PER
"""


def test_universal_ner_file_columns_are_detected(tmp_path):
    f = tmp_path / "zh.iob2"
    f.write_text(UNER, encoding="utf-8")
    sentences, choice = read_columns(f)
    assert (choice.token, choice.tag, choice.width, choice.detected) == (1, 2, 5, True)
    assert sentences == [(["上海", "交通", "大学", "位于", "中国"],
                          ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC"]),
                         (["张三", "去", "北京"], ["B-PER", "O", "B-LOC"])]


def test_conll_2003_takes_the_entity_column_and_keeps_a_hash_token(tmp_path):
    f = tmp_path / "eng.train"
    f.write_text(CONLL)
    sentences, choice = read_columns(f)
    assert (choice.token, choice.tag) == (0, 3)
    assert sentences[0] == (["EU", "rejects", "German", "#"], ["B-ORG", "O", "B-MISC", "O"])
    assert len(sentences) == 2
    chunks, _ = read_columns(f, token_column=0, tag_column=2)
    assert chunks[0][1] == ["B-NP", "B-VP", "B-NP", "I-NP"]


def test_plain_two_columns_and_pos_tags(tmp_path):
    f = tmp_path / "pos.txt"
    f.write_text("The DT\ncat NN\n\nRuns VBZ\n")
    sentences, choice = read_columns(f)
    assert (choice.token, choice.tag) == (0, 1)
    assert sentences == [(["The", "cat"], ["DT", "NN"]), (["Runs"], ["VBZ"])]


@pytest.mark.parametrize("columns, message", [
    (dict(token_column=0, tag_column=1), r"zh.iob2:3: tag '上海' contains text, not a tag"),
    (dict(token_column=1, tag_column=7), "tag column 7 does not exist"),
])
def test_wrong_columns_are_refused(tmp_path, columns, message):
    f = tmp_path / "zh.iob2"
    f.write_text(UNER, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_columns(f, **columns)


def test_a_word_column_read_as_tags_is_refused(tmp_path):
    f = tmp_path / "words.tsv"
    f.write_text("\n\n".join(f"{i}\tw{i}\tO" for i in range(MAX_TAGS + 20)))
    with pytest.raises(DataError, match=r"words.tsv: \d+ distinct values in the tag column"):
        read_columns(f, token_column=0, tag_column=1)
    assert len(read_columns(f)[0]) == MAX_TAGS + 20  # detected: token 1, tag 2


def test_ragged_lines_name_their_line(tmp_path):
    f = tmp_path / "r.conll"
    f.write_text("EU B-ORG\nrejects O extra\nPeter B-PER\n")
    with pytest.raises(DataError, match=r"r.conll:2: 3 columns, the file's lines have 2"):
        read_columns(f)


def test_named_columns_from_a_header_or_conllu(tmp_path):
    f = tmp_path / "plus.conllup"
    f.write_text("# global.columns = ID FORM UPOS NER\n1\tEU\tPROPN\tB-ORG\n2\trejects\tVERB\tO\n")
    sentences, choice = read_columns(f, token_column="FORM", tag_column="ner")
    assert (choice.token, choice.tag) == (1, 3) and sentences[0][1] == ["B-ORG", "O"]
    with pytest.raises(DataError, match="no column named 'LEMMA'"):
        read_columns(f, token_column="LEMMA", tag_column="NER")
    g = tmp_path / "ud.conll"
    g.write_text("1\tcats\tcat\tNOUN\tNNS\t_\t0\troot\t_\t_\n")
    assert read_columns(g, token_column="FORM", tag_column="XPOS")[0] == [(["cats"], ["NNS"])]
    h = tmp_path / "plain.tsv"
    h.write_text("EU\tB-ORG\n")
    with pytest.raises(DataError, match="no '# global.columns"):
        read_columns(h, token_column="FORM", tag_column="NER")


def test_columns_flag_from_the_command_line(tmp_path, capsys):
    from rnnkit.cli import main

    f = tmp_path / "ner.iob2"
    f.write_text(UNER * 20, encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "tag", "--train", str(f), "--out", str(run), "--epochs", "1",
                 "--hidden", "4", "--embedding-dim", "3", "--quiet", "--columns", "1,2"]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["train", "tag", "--train", str(f), "--out", str(tmp_path / "r2"), "--quiet",
              "--columns", "1"])
    assert "--columns takes WORD,TAG" in capsys.readouterr().err
