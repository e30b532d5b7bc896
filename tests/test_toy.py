"""The toy benchmark: deterministic, in the real formats, with the properties UMR needs."""

from __future__ import annotations

import re
import unicodedata

from umr import toy
from umr.corpus import Corpus
from umr.records import read_gold, read_questions

from conftest import MINI_SIZES

SCRIPTS = {"ar": "ARABIC", "bn": "BENGALI", "ja": ("HIRAGANA", "KATAKANA", "CJK"), "ko": "HANGUL",
           "ru": "CYRILLIC", "te": "TELUGU", "fi": "LATIN"}


def test_same_seed_same_bytes_other_seed_other_bytes(mini_data, tmp_path):
    again = toy.generate(MINI_SIZES, tmp_path / "again")
    for key, path in mini_data.items():
        assert path.read_bytes() == again[key].read_bytes(), key
    other = toy.generate(toy.ToySizes(**{**MINI_SIZES.__dict__, "seed": 8}), tmp_path / "other")
    assert other["corpus_xor_retrieve"].read_bytes() != mini_data["corpus_xor_retrieve"].read_bytes()


def test_real_formats_sizes_and_splits(mini_data):
    for split, n in MINI_SIZES.questions["xor_retrieve"].items():
        questions = read_questions(mini_data[f"xor_retrieve_{split}"])
        assert len(questions) == n * len(MINI_SIZES.languages)
        assert {q.lang for q in questions} == set(MINI_SIZES.languages)
    train = {q.id for q in read_questions(mini_data["xor_retrieve_train"])}
    dev = {q.id for q in read_questions(mini_data["xor_retrieve_dev"])}
    assert not train & dev
    with Corpus(mini_data["corpus_xor_full"]) as full:
        langs = {pid.split("_")[0] for pid in map(bytes.decode, full.ids)}
    assert langs == {"en", *MINI_SIZES.languages}


def test_questions_are_written_in_their_scripts(mini_data):
    for q in read_questions(mini_data["xor_retrieve_dev"]):
        letters = [c for c in q.text if c.isalpha() and not c.isascii()] or [c for c in q.text if c.isalpha()]
        wanted = SCRIPTS[q.lang]
        wanted = wanted if isinstance(wanted, tuple) else (wanted,)
        in_script = sum(any(unicodedata.name(c, "").startswith(w) for w in wanted) for c in letters)
        assert in_script / len(letters) > 0.5, q


def test_answers_are_spans_of_passages(mini_data):
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        english = "\n".join(p.text for p in corpus.iter_rows())
    for q in read_gold(mini_data["xor_retrieve_dev"]).values():
        assert any(a in english for a in q.answers)


def test_names_are_shared_across_scripts_only_sometimes(mini_data):
    latin_name = re.compile(r"[A-Z][a-z]+ [A-Z][a-z]+")
    questions = [q for q in read_questions(mini_data["xor_retrieve_train"]) if q.lang not in ("fi",)]
    shared = sum(bool(latin_name.search(q.text)) for q in questions)
    assert 0 < shared < len(questions)
