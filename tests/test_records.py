"""File formats at the boundaries: bad input is a one-line error naming file and line."""

from __future__ import annotations

import pytest

from umr.corpus import Corpus
from umr.errors import InputFileError
from umr.records import (GoldQuestion, Passage, read_gold, read_questions, read_trec_run, write_dpr_tsv,
                         write_questions, write_trec_run)


def write(path, text: str | bytes):
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_questions_round_trip_without_answers_for_training(tmp_path):
    path = tmp_path / "q.jsonl"
    write_questions(path, [GoldQuestion("1", "Где?", "ru", ("Tela",)), GoldQuestion("2", "Missä?", "fi", ())])
    questions = read_questions(path)
    assert [(q.id, q.text, q.lang) for q in questions] == [("1", "Где?", "ru"), ("2", "Missä?", "fi")]
    assert not hasattr(questions[0], "answers")
    assert read_gold(path)["1"].answers == ("Tela",)


@pytest.mark.parametrize("content, message", [
    ('{"id": "1", "question": "a", "lang": "ru"}\n{"id": "2", "question": "b" "lang": "ru"}\n', r"q\.jsonl:2: invalid JSON"),
    ('{"id": "1", "lang": "ru"}\n', r"q\.jsonl:1: missing field 'question'"),
    ('{"id": "1", "question": "", "lang": "ru"}\n', r"q\.jsonl:1: field 'question' must be a non-empty string"),
    ('[1, 2]\n', r"q\.jsonl:1: each line must be a JSON object"),
    ('{"id": "1", "question": "a", "lang": "ru"}\n{"id": "1", "question": "b", "lang": "ru"}\n', r"q\.jsonl:2: duplicate question id"),
    ('{"id": "1", "question": "a", "lang": "xx"}\n', r"q\.jsonl:1: question language 'xx' is not in the configured"),
    ("", r"q\.jsonl: no questions"),
])
def test_malformed_question_files(tmp_path, content, message):
    path = write(tmp_path / "q.jsonl", content)
    with pytest.raises(InputFileError, match=message):
        read_questions(path, languages=["ru"])


def test_non_utf8_bytes_name_the_line(tmp_path):
    path = write(tmp_path / "q.jsonl", b'{"id": "1", "question": "a", "lang": "ru"}\n{"id": "2", "question": "\xff", "lang": "ru"}\n')
    with pytest.raises(InputFileError, match=r"q\.jsonl:2: not valid UTF-8"):
        read_questions(path)


def test_gold_needs_answers(tmp_path):
    path = write(tmp_path / "test.jsonl", '{"id": "1", "question": "a", "lang": "ru"}\n')
    with pytest.raises(InputFileError, match="missing field 'answers'"):
        read_gold(path)


@pytest.mark.parametrize("content, message", [
    ("id\ttext\ttitle\n1\tsome text\n", r"c\.tsv:2: expected 3 tab-separated columns"),
    ("id\ttext\ttitle\n1\ta\tA\n1\tb\tB\n", r"c\.tsv:3: duplicate passage id '1'"),
    ("id\ttext\ttitle\n", r"c\.tsv: empty corpus"),
])
def test_malformed_corpora(tmp_path, content, message):
    path = write(tmp_path / "c.tsv", content)
    with pytest.raises(InputFileError, match=message):
        Corpus(path)


def test_corpus_random_access_matches_file_order(tmp_path):
    path = tmp_path / "c.tsv"
    write_dpr_tsv(path, [Passage("10", "T10", "ten"), Passage("2", "T2", 'says "hi"'), Passage("7", "T7", "seven")])
    with Corpus(path) as corpus:
        assert len(corpus) == 3
        assert corpus["2"] == Passage("2", "T2", 'says "hi"')
        assert [p.id for p in corpus.get_many(["7", "10"])] == ["7", "10"]
        assert [p.id for p in corpus.iter_rows(1)] == ["2", "7"]


def test_trec_run_round_trip(tmp_path):
    run = {"q1": [("d3", 2.5), ("d1", 1.0)], "q2": [("d2", -0.5)]}
    write_trec_run(tmp_path / "r.trec", run, "tag")
    assert read_trec_run(tmp_path / "r.trec") == run
    bad = write(tmp_path / "bad.trec", "q1 Q0 d1 1 0.5\n")
    with pytest.raises(InputFileError, match=r"bad\.trec:1: TREC run lines have 6 columns"):
        read_trec_run(bad)
