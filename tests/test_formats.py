"""The readers on hand-made files in the published formats (tests/fixtures/formats/README.md).

Expected values are written out by hand: DPR/CORA TSVs are csv.writer output (quoted
fields, doubled quotes, tabs inside quotes; DPR's has a header row, CORA's none) and the
XOR-TyDi JSONL files carry fields the pipeline does not use.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from conftest import REPO
from umr.baselines.bm25 import split_by_language
from umr.corpus import Corpus, build_offsets, save_offsets
from umr.errors import InputFileError, UMRError
from umr.records import (Passage, dpr_tsv_line, iter_dpr_tsv, parse_dpr_line, read_gold, read_questions,
                         write_dpr_tsv)

FORMATS = REPO / "tests" / "fixtures" / "formats"

ENWIKI = [
    Passage("1", "Aaron", 'Aaron Aaron ( or ; "Ahärôn") is a prophet, high priest, and the brother of Moses.'),
    Passage("2", '"Weird Al" Yankovic', "Alfred Matthew Yankovic is an American singer known for parodies."),
    Passage("12", "東京都", "Tokyo is the capital of Japan and its most populous city."),
    Passage("123", "القاهرة", "Cairo is the capital of Egypt."),
    Passage("124", "Bad (album)", '"Bad"'),
]
CORA = [
    Passage("0", "Pasi Rautiainen", "Pasi Rautiainen on suomalainen jalkapallovalmentaja."),
    Passage("1", "東京都", '東京都は日本の首都である。「東京」または"Tokyo"とも呼ばれる。'),
    Passage("2", "القاهرة", "القاهرة هي عاصمة جمهورية مصر العربية."),
    Passage("3", "Tab\there", "A passage whose title holds a tab."),
    Passage("10", '서울 "특별시"', "서울특별시는 대한민국의 수도이다."),
]


def csv_view(path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def csv_writer_bytes(rows) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out, delimiter="\t", lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


@pytest.mark.parametrize("name, expected", [("enwiki_w100.tsv", ENWIKI), ("cora_all_w100.tsv", CORA)])
def test_tsv_fixtures_are_what_csv_writer_writes(name, expected):
    path = FORMATS / name
    rows = [[p.id, p.text, p.title] for p in expected]
    header = [["id", "text", "title"]] if name.startswith("enwiki") else []
    assert csv_view(path) == header + rows
    assert path.read_bytes() == csv_writer_bytes(header + rows)


@pytest.mark.parametrize("name, expected", [("enwiki_w100.tsv", ENWIKI), ("cora_all_w100.tsv", CORA)])
def test_dpr_readers_on_published_formats(name, expected):
    assert list(iter_dpr_tsv(FORMATS / name)) == expected
    with Corpus(FORMATS / name) as corpus:
        assert len(corpus) == len(expected)
        assert list(corpus.iter_rows()) == expected
        assert [corpus[p.id] for p in expected] == expected
        assert corpus.get_many([expected[-1].id, expected[0].id]) == [expected[-1], expected[0]]
        assert corpus.ids.dtype.kind == "S"  # integer-looking ids stay strings


def test_writer_reproduces_the_enwiki_file_byte_for_byte(tmp_path):
    write_dpr_tsv(tmp_path / "c.tsv", ENWIKI)
    assert (tmp_path / "c.tsv").read_bytes() == (FORMATS / "enwiki_w100.tsv").read_bytes()


def test_write_round_trip_equals_csv_readers_view(tmp_path):
    passages = [
        Passage("7", "Bad", '"Bad"'),
        Passage("8", "Tab\tin title", 'a "quoted" word\tand a tab'),
        Passage("9", '"', 'ends with a quote"'),
        Passage("10", "plain", ""),
        Passage("11", "Ünïcode 東京", "no quotes at all"),
    ]
    path = tmp_path / "c.tsv"
    write_dpr_tsv(path, passages)
    assert csv_view(path) == [["id", "text", "title"]] + [[p.id, p.text, p.title] for p in passages]
    assert path.read_bytes() == csv_writer_bytes([["id", "text", "title"]] + [[p.id, p.text, p.title] for p in passages])
    assert list(iter_dpr_tsv(path)) == passages
    with Corpus(path) as corpus:
        assert corpus["7"].text == '"Bad"'
        assert corpus["8"] == passages[1]
    assert dpr_tsv_line(passages[0]) == '7\t"""Bad"""\tBad\n'
    with pytest.raises(ValueError, match="newline"):
        dpr_tsv_line(Passage("1", "T", "two\nlines"))


@pytest.mark.parametrize("line", [
    'a\tb\tc', '1\t"x""y"\tT', '1\tsay "hi" now\tT', '1\t""\t"T\tU"', '"1"\ttext\ttitle\r\n', '1\t"a"b\tT',
])
def test_line_parser_matches_csv_reader(line):
    assert parse_dpr_line(line, "f.tsv", 1) == next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))


def test_newline_inside_quotes_names_the_line(tmp_path):
    # csv.writer would write this record over two lines; the offset table cannot address it.
    path = tmp_path / "c.tsv"
    path.write_text('id\ttext\ttitle\n1\tfine\tA\n2\t"first line\nsecond line"\tB\n', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"c\.tsv:3: a quoted field is not closed on its line"):
        list(iter_dpr_tsv(path))
    with pytest.raises(InputFileError, match=r"c\.tsv:3: a quoted field is not closed"):
        Corpus(path)


def test_unknown_id_is_an_error_not_a_prefix_match(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("1\tone\tOne\n12\ttwelve\tTwelve\n", encoding="utf-8")  # headerless, like CORA's
    with Corpus(path) as corpus:
        assert corpus["12"].title == "Twelve"
        with pytest.raises(UMRError, match=r"c\.tsv: passage id '123' not in corpus"):
            corpus.get_many(["1", "123"])
        with pytest.raises(InputFileError, match=r"run\.trec: passage id '123' is not in the corpus .*c\.tsv"):
            corpus.get_many(["123"], source=tmp_path / "run.trec")
        with pytest.raises(UMRError, match="'0'"):
            corpus.rows_of(["0"])
        assert corpus.rows_of([]).size == 0
    with Corpus(path, source=["a.trec", "b.trec"]) as corpus:
        with pytest.raises(InputFileError, match=r"^a\.trec, b\.trec: passage id '123'"):
            corpus.rows_of(["12", "123"])


def test_stale_offset_table_is_an_error(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text("1\tone\tOne\n2\ttwo\tTwo\n", encoding="utf-8")
    save_offsets(tmp_path / "c.npz", *build_offsets(path, progress=False))
    path.write_text("1\tone, longer now\tOne\n2\ttwo\tTwo\n", encoding="utf-8")
    with Corpus(path, tmp_path / "c.npz") as corpus:
        with pytest.raises(InputFileError, match="corpus changed since its offset table was built"):
            corpus["2"]


def test_offsets_hold_unquoted_ids(tmp_path):
    path = tmp_path / "c.tsv"
    path.write_text('"7"\t"a ""b"""\tT\n8\tc\tU\n', encoding="utf-8")
    ids, offsets = build_offsets(path, progress=False)
    assert ids.tolist() == [b"7", b"8"] and offsets.tolist() == [0, 16]  # len('"7"\t"a ""b"""\tT\n') == 16
    with Corpus(path) as corpus:
        assert np.array_equal(corpus.rows_of(["8", "7"]), [1, 0])
        assert corpus["7"] == Passage("7", "T", 'a "b"')


def test_xor_retrieve_dev_fixture():
    path = FORMATS / "xor_retrieve_dev.jsonl"
    questions = read_questions(path, languages=["ar", "bn", "fi", "ja", "ko", "ru", "te"])
    assert [(q.id, q.lang) for q in questions] == [
        ("-3979399588609321314", "ru"), ("7931051574381133444", "ja"), ("1200582932546432001", "ar")]
    assert questions[1].text == "『指輪物語』はいつ出版された"
    gold = read_gold(path)
    assert [g.answers for g in gold.values()] == [("1",), ("1954", "1954 and 1955"), ("yes",)]
    assert all(set(json.loads(line)) == {"id", "question", "answers", "lang", "split"}
               for line in path.read_text(encoding="utf-8").splitlines())


def test_xor_full_dev_fixture():
    gold = read_gold(FORMATS / "xor_full_dev.jsonl", languages=["fi", "ja", "ko"])
    assert list(gold) == ["-6011287484575830003", "7931051574381133444", "5238102934822761229"]
    assert gold["7931051574381133444"].answers == ("1954年から1955年",)
    assert gold["5238102934822761229"].answers == ("18. lokakuuta 1961", "1961")
    assert gold["-6011287484575830003"].lang == "ko"


def test_question_field_types(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": 42, "question": "Missä?", "answers": ["Turku"], "lang": "fi ", "split": "dev"}\n',
                    encoding="utf-8")
    (q,) = read_questions(path, languages=["fi"])
    assert (q.id, q.lang) == ("42", "fi")  # JSON number -> string id; `lang` stripped like the official loaders
    path.write_text('{"id": "1", "question": "a", "answers": "Turku", "lang": "fi"}\n'
                    '{"id": "2", "question": "b", "answers": [3], "lang": "fi"}\n', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"q\.jsonl:1: field 'answers' must be a list of strings"):
        read_gold(path)
    path.write_text('{"id": "2", "question": "b", "answers": [3], "lang": "fi"}\n', encoding="utf-8")
    with pytest.raises(InputFileError, match=r"q\.jsonl:1: field 'answers' must be a list of strings"):
        read_gold(path)


def test_bm25_split_keeps_quoted_fields(tmp_path):
    counts = split_by_language(FORMATS / "cora_all_w100.tsv", tmp_path / "split")
    assert counts == {"fi": 1, "ja": 1, "ar": 1, "en": 1, "ko": 1}
    assert list(iter_dpr_tsv(tmp_path / "split" / "en.tsv")) == [CORA[3]]
    assert list(iter_dpr_tsv(tmp_path / "split" / "ko.tsv")) == [CORA[4]]
    assert list(iter_dpr_tsv(tmp_path / "split" / "ja.tsv")) == [CORA[1]]
