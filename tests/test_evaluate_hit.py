"""The XOR-Full hit tests of umr.evaluate: `substring` (default) and DPR's `has_answer`.

Expected values are worked out by hand from DPR's semantics (dpr/data/qa_validation.py
`has_answer` with match_type "string", dpr/utils/tokenizers.py `SimpleTokenizer`): text and
answer are NFD-normalised, split into tokens by `[\\p{L}\\p{N}\\p{M}]+|[^\\p{Z}\\p{C}]` (a run of
letters, numbers and combining marks, or else one character that is neither a separator nor a
control/format character), lower-cased, and an answer is found if its tokens are a contiguous run
of the text's tokens. The `substring` test is `answer in text` on the raw strings.
"""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import pytest

from umr.errors import ConfigError
from umr.evaluate import HIT_TESTS, Prediction, dpr_has_answer, dpr_words, evaluate_run, xor_full_topk
from umr.io import run_cli
from umr.records import GoldQuestion, Passage, write_dpr_tsv, write_questions
import umr.evaluate as evaluate


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def gq(qid: str, lang: str, *answers: str) -> GoldQuestion:
    return GoldQuestion(qid, f"question {qid}", lang, tuple(answers))


def full_hit(answer: str, *ctxs: str, hit: str, k: int = 1) -> bool:
    """Whether one question with this answer is a Top-k hit of xor_full_topk."""
    scores = xor_full_topk([Prediction("q", "fi", ctxs)], {"q": gq("q", "fi", answer)}, None, [k], hit=hit)
    tally = scores["all"][f"Top-{k}"]["fi"]
    assert tally.count == 1
    return tally.hits == 1


def both(answer: str, text: str) -> tuple[bool, bool]:
    """(substring hit, dpr_has_answer hit) of one answer in a one-passage top-1.

    Also checks that xor_full_topk's dpr path agrees with the public `dpr_has_answer`.
    """
    dpr = full_hit(answer, text, hit="dpr_has_answer")
    assert dpr == dpr_has_answer([answer], text)
    return full_hit(answer, text, hit="substring"), dpr


def test_hit_tests_constant():
    assert HIT_TESTS == ("substring", "dpr_has_answer")


# --- the tokenizer ----------------------------------------------------------------------

def test_dpr_words_are_simple_tokenizer_tokens_lower_cased():
    # Letter/number runs are words; "." is one punctuation token each; the space is a separator.
    assert dpr_words("He moved to the U.S. in 1990.") == [
        "he", "moved", "to", "the", "u", ".", "s", ".", "in", "1990", "."]
    # Newline and tab are control characters (Cc), no-break space a separator (Zs): none is a token.
    assert dpr_words("a\nb\tc\u00a0d") == ["a", "b", "c", "d"]
    # NFD: "é" becomes "e" + U+0301 (a combining mark, Mn), which stays inside the word.
    assert dpr_words("Café") == ["cafe\u0301"]


def test_dpr_words_of_cjk_text_without_spaces():
    # Han characters and hiragana are all \p{Lo} (letters): "首都は東京です" is one run of
    # letters, so ONE token. "、" (U+3001 IDEOGRAPHIC COMMA) is \p{Po}: neither letter, number
    # nor mark, so it ends the run and is a token of its own, as is "・" (U+30FB, \p{Po}).
    # Words come back in NFD: "で" is "て" + U+3099 (a combining mark, \p{Mn}, inside the run).
    assert dpr_words("首都は東京です") == ["首都は東京て\u3099す"]
    assert dpr_words("東京、大阪") == ["東京", "、", "大阪"]
    assert dpr_words("ナカ・ムラ") == ["ナカ", "・", "ムラ"]
    # Hangul syllables are \p{Lo} too (NFD turns them into conjoining jamo, \p{Lo} as well): a
    # noun and its particle ("서울" + "에") are one token; the space between words separates them.
    assert dpr_words("서울에 갔다") == [nfd("서울에"), nfd("갔다")]


# --- capitalisation ---------------------------------------------------------------------

def test_capitalisation():
    # DPR lower-cases both sides; the substring test is case-sensitive.
    assert both("paris", "Paris is the capital.") == (False, True)
    assert both("PARIS", "paris is the capital.") == (False, True)
    assert both("Paris", "Paris is the capital.") == (True, True)


# --- diacritics, NFC / NFD ----------------------------------------------------------------

def test_precomposed_text_decomposed_answer():
    # Text "café" with U+00E9 (NFC), answer "cafe" + U+0301 (NFD): the same after NFD.
    assert both("cafe\u0301", "Le caf\u00e9 est ouvert.") == (False, True)


def test_decomposed_text_precomposed_answer():
    assert both("caf\u00e9", "Le cafe\u0301 est ouvert.") == (False, True)


def test_finnish_diacritics():
    # "Hämeenlinna": answer precomposed (U+00E4), text decomposed ("a" + U+0308).
    assert both("H\u00e4meenlinna", "Ha\u0308meenlinna on kaupunki.") == (False, True)
    # Upper-case Ä in the answer, ä in the text: lower-cased after NFD, "A" + U+0308 -> "a" + U+0308.
    assert both("H\u00c4MEENLINNA", "H\u00e4meenlinna on kaupunki.") == (False, True)
    # NFD keeps the diacritic (as a combining mark inside the word): "hameenlinna" is not the
    # word "ha\u0308meenlinna", nor a raw substring of the text ("a" is followed by U+0308).
    assert both("Hameenlinna", "Ha\u0308meenlinna on kaupunki.") == (False, False)
    # An inflected form is another word: the inessive "Hämeenlinnassa" does not contain the word.
    assert both("Hämeenlinna", "Hämeenlinnassa on linna.") == (True, False)
    # A hyphen (\p{Pd}) is a token of its own: "Suomi" is a word of "Etelä-Suomi".
    assert both("suomi", "Etelä-Suomi on alue.") == (False, True)


def test_japanese_kana_with_dakuten():
    # "ガ" (U+30AC) decomposes to "カ" + U+3099 (combining voiced sound mark, \p{Mn}): a mark stays
    # in the word, so the NFC answer matches the NFD text under DPR; the raw strings differ.
    assert both("ガス", "カ\u3099ス。") == (False, True)


# --- whole words ----------------------------------------------------------------------------

def test_word_internal_match():
    assert both("cat", "Don't concatenate strings.") == (True, False)
    assert both("Tok", "Tokyo is big.") == (True, False)


def test_japanese_without_spaces():
    # The sentence is one token (see test_dpr_words_of_cjk_text_without_spaces): "東京" is not a
    # token of it, so DPR misses where the raw substring test hits.
    assert both("東京", "首都は東京です") == (True, False)
    # Delimited by "、" (its own token), "東京" is a whole token: both hit.
    assert both("東京", "東京、大阪") == (True, True)
    assert both("ムラ", "ナカ・ムラ") == (True, True)


def test_korean_with_particles():
    # "서울에" (Seoul + locative particle) is one token: DPR misses, substring hits.
    assert both("서울", "서울에 갔다") == (True, False)
    # Followed by a space, "서울" is a token of its own.
    assert both("서울", "서울 특별시") == (True, True)


def test_korean_decomposed_jamo_answer():
    # "서울" as conjoining jamo (NFD): 서 = U+1109 U+1165, 울 = U+110B U+116E U+11AF.
    jamo = "\u1109\u1165\u110b\u116e\u11af"
    assert nfd("서울") == jamo
    assert both(jamo, "서울 특별시") == (False, True)


# --- punctuation --------------------------------------------------------------------------

def test_punctuation_splits_tokens():
    text = "He moved to the U.S. in 1990."  # he moved to the u . s . in 1990 .
    assert both("U.S.", text) == (True, True)
    assert both("U.S", text) == (True, True)  # u . s: a contiguous run
    assert both("u.s.", text) == (False, True)
    assert both("U. S.", text) == (False, True)  # the same tokens: spacing does not matter
    assert both("US", text) == (False, False)  # "us" is not a token
    assert both("1990", text) == (True, True)  # "." is split off
    assert both("U.S.", "the US economy") == (False, False)
    assert both("1990.", "born 1990 in Turku") == (False, False)
    assert both("Paris , France", "Paris, France is big.") == (False, True)
    assert both("don't", "I don't know.") == (True, True)  # don ' t in both
    assert both("St Louis", "St. Louis, Missouri") == (False, False)  # st louis vs st . louis
    assert both("1000", "about 1,000 people") == (False, False)  # 1 , 000


# --- empty answers ------------------------------------------------------------------------

def test_dpr_has_answer_empty_answers_match_like_dpr():
    # DPR tokenizes an empty or blank answer to no token, and an empty token list equals the
    # empty slice at position 0 of any text (even an empty one): a hit. It drops nothing.
    assert dpr_has_answer([""], "Paris")
    assert dpr_has_answer(["   "], "Paris")
    assert dpr_has_answer([""], "")
    assert dpr_has_answer(["\u200b"], "Paris")  # only a format character (Cf): no token
    assert not dpr_has_answer([], "Paris")
    assert not dpr_has_answer(["Paris"], "")
    assert dpr_has_answer(["Rome", "paris"], "Paris.")


def test_blank_answers_are_dropped_under_both_hit_tests():
    gold = {"q1": gq("q1", "fi", ""), "q2": gq("q2", "fi", " ", "\t")}
    preds = [Prediction("q1", "fi", ("Paris",)), Prediction("q2", "fi", ("Paris",))]
    for hit in HIT_TESTS:
        # No answer left: not counted at all, as before.
        assert xor_full_topk(preds, gold, None, hit=hit)["all"]["Top-1"] == {}


def test_wordless_answers_count_but_never_hit():
    # "\u200b" is not blank for str.strip, so the question counts under both tests; under DPR it
    # has no token and would match every passage, so xor_full_topk ignores it.
    gold = {"q": gq("q", "fi", "\u200b")}
    for hit in HIT_TESTS:
        tally = xor_full_topk([Prediction("q", "fi", ("Paris",))], gold, None, hit=hit)["all"]["Top-1"]["fi"]
        assert (tally.hits, tally.count) == (0, 1)


# --- the metric end to end ------------------------------------------------------------------

E2E_GOLD = {q.id: q for q in [gq("q1", "ja", "東京"), gq("q2", "fi", "helsinki"), gq("q3", "ko", "서울")]}
E2E_PREDS = [
    # substring: rank 1; dpr: rank 3 (rank 1 is one token).
    Prediction("q1", "ja", ("首都は東京です", "大阪", "東京、大阪")),
    # substring: never (case); dpr: rank 1.
    Prediction("q2", "fi", ("Helsinki on Suomen pääkaupunki.",)),
    # substring: rank 1; dpr: rank 6 (ranks 1-5 have no token "서울").
    Prediction("q3", "ko", ("서울에 갔다", "부산", "a", "b", "c", "서울 특별시")),
]


def table(rows):
    return {(r["metric"], r["lang"]): (r["value"], r["count"]) for r in rows}


def test_xor_full_topk_end_to_end_substring():
    rows = evaluate_run("xor_full", "dev", E2E_GOLD, E2E_PREDS)
    assert rows == evaluate_run("xor_full", "dev", E2E_GOLD, E2E_PREDS, hit="substring")
    assert table(rows) == {
        ("Top-1", "fi"): (0.0, 1), ("Top-1", "ja"): (100.0, 1), ("Top-1", "ko"): (100.0, 1),
        ("Top-1", "avg"): (200 / 3, 3),
        ("Top-5", "fi"): (0.0, 1), ("Top-5", "ja"): (100.0, 1), ("Top-5", "ko"): (100.0, 1),
        ("Top-5", "avg"): (200 / 3, 3),
        ("Top-20", "fi"): (0.0, 1), ("Top-20", "ja"): (100.0, 1), ("Top-20", "ko"): (100.0, 1),
        ("Top-20", "avg"): (200 / 3, 3),
    }


def test_xor_full_topk_end_to_end_dpr_has_answer():
    rows = evaluate_run("xor_full", "dev", E2E_GOLD, E2E_PREDS, hit="dpr_has_answer")
    assert table(rows) == {
        ("Top-1", "fi"): (100.0, 1), ("Top-1", "ja"): (0.0, 1), ("Top-1", "ko"): (0.0, 1),
        ("Top-1", "avg"): (100 / 3, 3),
        ("Top-5", "fi"): (100.0, 1), ("Top-5", "ja"): (100.0, 1), ("Top-5", "ko"): (0.0, 1),
        ("Top-5", "avg"): (200 / 3, 3),
        ("Top-20", "fi"): (100.0, 1), ("Top-20", "ja"): (100.0, 1), ("Top-20", "ko"): (100.0, 1),
        ("Top-20", "avg"): (100.0, 3),
    }


def test_xor_full_topk_dpr_with_subsets():
    # q1 is an English question ("Tokyo" from the XOR-Retrieve gold). DPR: rank 1 is the single
    # token "首都は東京です" (no "東京", no "tokyo"), rank 2 has the token "tokyo": a hit at k=2 only.
    # Substring: "Tokyo" is never found (case), but "東京" is a raw substring at rank 1.
    english = {"q1": gq("q1", "ja", "Tokyo")}
    preds = [Prediction("q1", "ja", ("首都は東京です", "TOKYO TOWER"))]
    gold = {"q1": E2E_GOLD["q1"]}
    sub = xor_full_topk(preds, gold, english, [1, 2])
    dpr = xor_full_topk(preds, gold, english, [1, 2], hit="dpr_has_answer")
    assert {k: v["ja"].hits for k, v in sub["english"].items()} == {"Top-1": 1, "Top-2": 1}
    assert {k: v["ja"].hits for k, v in dpr["english"].items()} == {"Top-1": 0, "Top-2": 1}
    assert dpr["target"]["Top-2"] == {} and dpr["all"]["Top-2"]["ja"].hits == 1


def test_unknown_hit_test_is_refused():
    with pytest.raises(ConfigError, match="hit"):
        xor_full_topk(E2E_PREDS, E2E_GOLD, None, hit="token")
    with pytest.raises(ConfigError, match="hit"):
        evaluate_run("xor_full", "dev", E2E_GOLD, E2E_PREDS, hit="token")
    # R@kt has its own (official) test only.
    with pytest.raises(ConfigError, match="hit"):
        evaluate_run("xor_retrieve", "dev", E2E_GOLD, E2E_PREDS, hit="dpr_has_answer")


# --- command line -------------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    write_questions(tmp_path / "gold.jsonl",
                    [gq("q1", "ja", "tokyo"), gq("q2", "ja", "Kyoto"), gq("q3", "ko", "서울")])
    write_dpr_tsv(tmp_path / "corpus.tsv", [
        Passage("p1", "Tokyo", "Tokyo is the capital of Japan."),  # "tokyo": dpr hit, substring miss
        Passage("p2", "Kyoto", "Kyoto."),  # both hit
        Passage("p3", "Seoul", "서울에 갔다."),  # "서울": substring hit, dpr miss
    ])
    (tmp_path / "run.trec").write_text("q1 Q0 p1 1 2.0 t\nq2 Q0 p2 1 2.0 t\nq3 Q0 p3 1 2.0 t\n", encoding="utf-8")
    return {"dir": tmp_path, "gold": tmp_path / "gold.jsonl", "corpus": tmp_path / "corpus.tsv",
            "run": tmp_path / "run.trec"}


def cli(files, *extra: str) -> tuple[int, str]:
    out = files["dir"] / "eval.csv"
    argv = ["--gold", files["gold"], "--run", files["run"], "--corpus", files["corpus"], "--out", out, *extra]
    rc = run_cli(evaluate._parser, evaluate._main, [str(a) for a in argv])
    return rc, out.read_text(encoding="utf-8") if rc == 0 else ""


def test_cli_hit_option(files):
    header = "task,split,lang,subset,metric,value,count\n"
    rc, default = cli(files, "--task", "xor_full", "--top-k", "1")
    assert rc == 0
    assert default == header + (
        "xor_full,dev,ja,all,Top-1,50.0,2\n"
        "xor_full,dev,ko,all,Top-1,100.0,1\n"
        "xor_full,dev,avg,all,Top-1,75.0,3\n")
    rc, substring = cli(files, "--task", "xor_full", "--top-k", "1", "--hit", "substring")
    assert (rc, substring) == (0, default)
    rc, dpr = cli(files, "--task", "xor_full", "--top-k", "1", "--hit", "dpr_has_answer")
    assert rc == 0
    assert dpr == header + (
        "xor_full,dev,ja,all,Top-1,100.0,2\n"
        "xor_full,dev,ko,all,Top-1,0.0,1\n"
        "xor_full,dev,avg,all,Top-1,50.0,3\n")


def test_cli_hit_option_choices_and_task(files, capsys):
    action = next(a for a in evaluate._parser()._actions if a.dest == "hit")
    assert (action.default, tuple(action.choices)) == ("substring", HIT_TESTS)
    assert "dpr_has_answer" in action.help and "substring" in action.help
    rc, _ = cli(files, "--task", "xor_retrieve", "--hit", "dpr_has_answer")
    assert rc == 1
    assert "--hit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(files, "--task", "xor_full", "--hit", "token")
