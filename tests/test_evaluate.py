"""Tests of umr.evaluate on hand-made fixtures; expected values are computed by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from umr.errors import ConfigError, UMRError
from umr.evaluate import (
    COLUMNS,
    Prediction,
    evaluate_run,
    span_answers,
    token_prefix,
    tokens,
    xor_full_topk,
    xor_retrieve_recall,
)
from umr.io import run_cli
from umr.records import GoldQuestion, Passage, write_dpr_tsv, write_questions
import umr.evaluate as evaluate


def gq(qid: str, lang: str, *answers: str) -> GoldQuestion:
    return GoldQuestion(qid, f"question {qid}", lang, tuple(answers))


def pred(qid: str, lang: str, *ctxs: str) -> Prediction:
    return Prediction(qid, lang, tuple(ctxs))


def recall(preds, gold, budget):
    """{lang: (hits, count)} of one budget."""
    scores = xor_retrieve_recall(preds, {q.id: q for q in gold}, budgets=[budget])
    (per_lang,) = scores.values()
    return {lang: (t.hits, t.count) for lang, t in per_lang.items()}


def hit(answer: str, *ctxs: str, budget: int = 2000) -> bool:
    hits, count = recall([pred("q", "ja", *ctxs)], [gq("q", "ja", answer)], budget)["ja"]
    assert count == 1
    return hits == 1


# --- tokenization -----------------------------------------------------------------------

def test_shipped_punkt_model_splits_sentences():
    assert list(tokens("Mr. Smith went to Washington. He arrived at 5 p.m. on Jan. 3rd.")) == [
        "Mr.", "Smith", "went", "to", "Washington", ".",
        "He", "arrived", "at", "5", "p.m.", "on", "Jan.", "3rd", ".",
    ]


def test_shipped_punkt_model_is_found_by_nltk():
    # Only the four punkt_tab files: nothing is downloaded.
    model = evaluate.NLTK_DATA / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in model.iterdir()) == [
        "abbrev_types.txt", "collocations.tab", "ortho_context.tab", "sent_starters.txt"]
    import nltk

    evaluate.word_tokenizer()
    assert str(evaluate.NLTK_DATA) in nltk.data.path


# --- R@kt: answer matching --------------------------------------------------------------

def test_answers_are_case_sensitive():
    assert hit("Tokyo", "The capital is Tokyo.")
    assert not hit("tokyo", "The capital is Tokyo.")
    assert not hit("TOKYO", "The capital is Tokyo.")


def test_answers_are_raw_substrings_of_the_tokenized_text():
    # A substring, not a token match: "Tok" is found inside "Tokyo".
    assert hit("Tok", "The capital is Tokyo.")
    # "U.S." is a Punkt abbreviation: it stays one token.
    assert hit("U.S.", "He moved to the U.S. in 1990.")
    # Contractions are split, so the raw form never matches.
    assert not hit("don't", "I don't know.")
    assert hit("do n't", "I don't know.")
    # Punctuation after an answer becomes its own token.
    assert hit("Paris", "Paris, France is big.")
    assert not hit("Paris,", "Paris, France is big.")
    assert hit("1990", "He was born in 1990.")
    assert not hit("1990.", "He was born in 1990.")
    # Straight quotes become Treebank quotes.
    assert not hit('"hello"', 'He said "hello" there.')
    assert hit("`` hello ''", 'He said "hello" there.')


def test_passages_are_sentence_split_before_word_tokenizing():
    # word_tokenize(text) with sentence splitting: the inner sentence's period is split off.
    assert not hit("Washington. He", "Smith went to Washington. He arrived.")
    assert hit("Washington . He", "Smith went to Washington. He arrived.")


def test_passages_are_joined_with_single_spaces():
    # Tokens of consecutive passages are joined by one space, so answers can straddle passages.
    assert hit("Osaka Kyoto", "Osaka", "Kyoto")
    assert hit("a b", "a   \n", "  b")


# --- R@kt: yes/no answers ---------------------------------------------------------------

def test_yes_no_answers_are_dropped_exactly():
    assert span_answers(["yes", "no", "Yes", "NO", "nope", "Paris"]) == ["Yes", "NO", "nope", "Paris"]


def test_blank_answers_are_dropped():
    assert span_answers(["", " ", "\t", "Paris", " Paris "]) == ["Paris", " Paris "]


def test_a_blank_answer_is_never_a_hit_not_even_without_passages():
    # The official script keeps "" and `"" in text` is True: a hit with no passage at all.
    gold = [gq("q1", "ja", ""), gq("q2", "ja", "", "Paris"), gq("q3", "ja", " ")]
    preds = [pred("q1", "ja"), pred("q2", "ja", "Rome"), pred("q3", "ja", "anything")]
    assert recall(preds, gold, 2000) == {"ja": (0, 1)}  # q1 and q3 have no answer left; q2 misses
    assert xor_full_topk([pred("q2", "ja")], {"q2": gq("q2", "ja", "")}, None)["all"]["Top-1"] == {}


def test_questions_with_only_yes_no_answers_are_not_counted():
    gold = [gq("q1", "ja", "yes"), gq("q2", "ja", "no", "yes"), gq("q3", "ja", "no", "Paris"), gq("q4", "ja", "Yes")]
    preds = [pred(q.id, "ja", "yes no Paris") for q in gold]
    # q1, q2 skipped; q3 hits through "Paris"; "Yes" (capitalised) is kept and misses.
    assert recall(preds, gold, 2000) == {"ja": (1, 2)}


def test_no_language_when_all_its_questions_are_yes_no():
    gold = [gq("q1", "ja", "yes"), gq("q2", "ko", "Seoul")]
    preds = [pred("q1", "ja", "yes"), pred("q2", "ko", "Seoul")]
    assert recall(preds, gold, 2000) == {"ko": (1, 1)}


# --- R@kt: token budget -----------------------------------------------------------------

def test_budget_boundary_small():
    ctxs = ("alpha beta gamma delta", "epsilon zeta eta")  # 4 + 3 tokens
    assert token_prefix(ctxs, 5) == ["alpha", "beta", "gamma", "delta", "epsilon"]
    assert hit("epsilon", *ctxs, budget=5)  # token 5: inside the budget
    assert not hit("zeta", *ctxs, budget=5)  # token 6: cut off
    assert hit("zeta", *ctxs, budget=6)
    assert hit("delta epsilon", *ctxs, budget=5)  # straddles two passages, ends at token 5
    assert not hit("epsilon zeta", *ctxs, budget=5)  # straddles token 5 and 6


def test_budget_stops_after_the_passage_that_fills_it():
    # Exactly filled by the first passage: later passages never count.
    assert not hit("zeta", "alpha beta gamma delta epsilon", "zeta", budget=5)
    # Passages shorter than the budget: all their tokens count.
    assert token_prefix(("a b", "c"), 10) == ["a", "b", "c"]


def test_budget_boundary_at_2000_tokens():
    filler = " ".join(["filler"] * 1999)
    gold = [gq("q1", "fi", "Kyoto"), gq("q2", "fi", "Osaka")]
    preds = [pred("q1", "fi", filler, "Kyoto Osaka"), pred("q2", "fi", filler, "Kyoto Osaka")]
    # "Kyoto" is token 2000 (counted), "Osaka" token 2001 (only within 5000).
    scores = xor_retrieve_recall(preds, {q.id: q for q in gold})
    assert list(scores) == ["R@2kt", "R@5kt"]
    assert (scores["R@2kt"]["fi"].hits, scores["R@2kt"]["fi"].count) == (1, 2)
    assert (scores["R@5kt"]["fi"].hits, scores["R@5kt"]["fi"].count) == (2, 2)


def test_invalid_budgets_are_refused():
    with pytest.raises(ConfigError, match="budgets"):
        xor_retrieve_recall([], {}, budgets=[0])
    with pytest.raises(ConfigError, match="budgets"):
        xor_retrieve_recall([], {}, budgets=[])


# --- R@kt: which questions count ---------------------------------------------------------

def test_gold_questions_missing_from_predictions_are_ignored():
    gold = {q.id: q for q in [gq("q1", "ar", "Cairo"), gq("q2", "ar", "Giza"), gq("q3", "ar", "Luxor")]}
    rows = evaluate_run("xor_retrieve", "dev", gold, [pred("q1", "ar", "Cairo is big.")], budgets=[2000])
    # 1 hit out of the 1 predicted question: 100, not 1/3.
    assert [(r["lang"], r["value"], r["count"]) for r in rows] == [("ar", 100.0, 1), ("avg", 100.0, 1)]


def test_predictions_not_in_gold_are_ignored():
    gold = [gq("q1", "ar", "Cairo")]
    assert recall([pred("q1", "ar", "Cairo"), pred("zz", "ar", "Cairo")], gold, 2000) == {"ar": (1, 1)}


def test_macro_average_over_languages_with_questions():
    gold = {q.id: q for q in [
        gq("a1", "ar", "Cairo"), gq("a2", "ar", "Giza"),  # ar: 1 of 2 -> 50
        gq("b1", "bn", "Dhaka"),  # bn: 1 of 1 -> 100
        gq("f1", "fi", "yes"),  # fi: only yes/no -> no score at all
    ]}
    preds = [pred(qid, q.lang, "Cairo Dhaka yes") for qid, q in gold.items()]
    rows = evaluate_run("xor_retrieve", "dev", gold, preds)
    assert [(r["metric"], r["lang"], r["value"], r["count"]) for r in rows] == [
        ("R@2kt", "ar", 50.0, 2), ("R@2kt", "bn", 100.0, 1), ("R@2kt", "avg", 75.0, 3),  # not 2/3 micro
        ("R@5kt", "ar", 50.0, 2), ("R@5kt", "bn", 100.0, 1), ("R@5kt", "avg", 75.0, 3),
    ]
    assert all(list(r) == list(COLUMNS) for r in rows)
    assert {(r["task"], r["split"], r["subset"]) for r in rows} == {("xor_retrieve", "dev", "all")}


def test_languages_in_paper_order():
    gold = {q.id: q for q in [gq("1", "te", "x"), gq("2", "zz", "x"), gq("3", "ar", "x"), gq("4", "ja", "x")]}
    rows = evaluate_run("xor_retrieve", "dev", gold, [pred(q, g.lang, "x") for q, g in gold.items()], budgets=[10])
    assert [r["lang"] for r in rows] == ["ar", "ja", "te", "zz", "avg"]
    assert rows[0]["metric"] == "R@10t"


def test_nothing_to_score_is_an_error():
    gold = {"q1": gq("q1", "ar", "yes")}
    with pytest.raises(UMRError, match="no question could be scored"):
        evaluate_run("xor_retrieve", "dev", gold, [pred("q1", "ar", "yes")])


# --- XOR-Full top-k ---------------------------------------------------------------------

FULL_GOLD = {q.id: q for q in [
    gq("q1", "ja", "東京"),  # English answers too (in the XOR-Retrieve gold)
    gq("q2", "ja", "大阪"),
    gq("q3", "ko", "서울"),
    gq("q4", "ko", "부산"),  # English answers too
    gq("q5", "ko", "yes"),  # yes/no only: not counted
]}
ENGLISH_GOLD = {q.id: q for q in [gq("q1", "ja", "Tokyo"), gq("q4", "ko", "Busan"), gq("zz", "ar", "Cairo")]}
FULL_PREDS = [
    pred("q1", "ja", "Tokyo is the capital.", "x"),  # english answer at rank 1
    pred("q2", "ja", "x", "大阪は大きい。"),  # target answer at rank 2
    pred("q3", "ko", "x", "y", "서울"),  # rank 3: beyond the cut-offs
    pred("q4", "ko", "x", "부산"),  # english question, target-language answer at rank 2
    pred("q5", "ko", "yes"),
]


def full_table(rows):
    return {(r["subset"], r["metric"], r["lang"]): (r["value"], r["count"]) for r in rows}


def test_xor_full_subsets():
    rows = evaluate_run("xor_full", "dev", FULL_GOLD, FULL_PREDS, ENGLISH_GOLD, top_k=[2, 1])
    assert full_table(rows) == {
        ("english", "Top-1", "ja"): (100.0, 1), ("english", "Top-1", "ko"): (0.0, 1),
        ("english", "Top-1", "avg"): (50.0, 2),
        ("english", "Top-2", "ja"): (100.0, 1), ("english", "Top-2", "ko"): (100.0, 1),
        ("english", "Top-2", "avg"): (100.0, 2),
        ("target", "Top-1", "ja"): (0.0, 1), ("target", "Top-1", "ko"): (0.0, 1),
        ("target", "Top-1", "avg"): (0.0, 2),
        ("target", "Top-2", "ja"): (100.0, 1), ("target", "Top-2", "ko"): (0.0, 1),
        ("target", "Top-2", "avg"): (50.0, 2),
        ("all", "Top-1", "ja"): (50.0, 2), ("all", "Top-1", "ko"): (0.0, 2),
        ("all", "Top-1", "avg"): (25.0, 4),
        ("all", "Top-2", "ja"): (100.0, 2), ("all", "Top-2", "ko"): (50.0, 2),
        ("all", "Top-2", "avg"): (75.0, 4),
    }
    # Subsets in table order, metrics by increasing k, languages then avg.
    assert [(r["subset"], r["metric"], r["lang"]) for r in rows][:6] == [
        ("english", "Top-1", "ja"), ("english", "Top-1", "ko"), ("english", "Top-1", "avg"),
        ("english", "Top-2", "ja"), ("english", "Top-2", "ko"), ("english", "Top-2", "avg")]


def test_xor_full_default_cutoffs_and_raw_untokenized_match():
    scores = xor_full_topk([pred("q1", "ja", "x", "東京都")], FULL_GOLD, ENGLISH_GOLD)
    assert list(scores["english"]) == ["Top-1", "Top-5", "Top-20"]
    assert scores["english"]["Top-1"]["ja"].hits == 0
    assert scores["english"]["Top-5"]["ja"].hits == 1
    # Raw text, so "don't" matches (R@kt would not), and per passage: no match across passages.
    gold = {"q": gq("q", "ja", "don't", "Osaka Kyoto")}
    assert xor_full_topk([pred("q", "ja", "I don't.")], gold, None)["all"]["Top-1"]["ja"].hits == 1
    assert xor_full_topk([pred("q", "ja", "Osaka", "Kyoto")], gold, None)["all"]["Top-5"]["ja"].hits == 0


def test_xor_full_without_english_gold_scores_all_only():
    rows = evaluate_run("xor_full", "dev", FULL_GOLD, FULL_PREDS, top_k=[1, 2])
    # Without the English answers q1 ("Tokyo" at rank 1) is a miss.
    assert full_table(rows) == {
        ("all", "Top-1", "ja"): (0.0, 2), ("all", "Top-1", "ko"): (0.0, 2), ("all", "Top-1", "avg"): (0.0, 4),
        ("all", "Top-2", "ja"): (50.0, 2), ("all", "Top-2", "ko"): (50.0, 2), ("all", "Top-2", "avg"): (50.0, 4)}


def test_english_gold_only_for_xor_full():
    with pytest.raises(ConfigError, match="english_gold"):
        evaluate_run("xor_retrieve", "dev", FULL_GOLD, FULL_PREDS, ENGLISH_GOLD)
    with pytest.raises(ConfigError, match="task"):
        evaluate_run("xor_english", "dev", FULL_GOLD, FULL_PREDS)


# --- command line -----------------------------------------------------------------------

@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    gold = [gq("q1", "ja", "Tokyo"), gq("q2", "ja", "Kyoto"), gq("q3", "ko", "Seoul"), gq("q4", "ko", "Busan")]
    write_questions(tmp_path / "gold.jsonl", gold)
    write_dpr_tsv(tmp_path / "corpus.tsv", [
        Passage("p1", "Tokyo", "Tokyo is the capital of Japan."),
        Passage("p2", "Kyoto", "The old capital had many temples."),  # answer only in the title
        Passage("p3", "Korea", "Seoul, the capital."),
    ])
    (tmp_path / "ja.trec").write_text("q1 Q0 p1 1 2.0 t\nq1 Q0 p3 2 1.0 t\nq2 Q0 p2 1 3.0 t\n", encoding="utf-8")
    (tmp_path / "ko.trec").write_text("q3 Q0 p1 2 1.0 t\nq3 Q0 p3 1 5.0 t\n", encoding="utf-8")  # q4 missing
    return {"dir": tmp_path, "gold": tmp_path / "gold.jsonl", "corpus": tmp_path / "corpus.tsv",
            "ja": tmp_path / "ja.trec", "ko": tmp_path / "ko.trec"}


def cli(*argv: str) -> int:
    return run_cli(evaluate._parser, evaluate._main, [str(a) for a in argv])


def test_cli_end_to_end(files, capsys):
    out, preds = files["dir"] / "eval.csv", files["dir"] / "pred.json"
    rc = cli("--task", "xor_retrieve", "--split", "dev", "--gold", files["gold"], "--run", files["ja"],
             "--run", files["ko"], "--corpus", files["corpus"], "--out", out, "--predictions-out", preds,
             "--missing", "skip")
    assert rc == 0
    # run_cli logs to stderr (it replaces the root handlers, so caplog sees nothing).
    assert "WARNING umr: 1 of 4 gold questions are not in the run" in capsys.readouterr().err
    # q1 hit, q2 miss (title not searched), q3 hit; q4 ignored.
    assert out.read_text(encoding="utf-8") == (
        "task,split,lang,subset,metric,value,count\n"
        "xor_retrieve,dev,ja,all,R@2kt,50.0,2\n"
        "xor_retrieve,dev,ko,all,R@2kt,100.0,1\n"
        "xor_retrieve,dev,avg,all,R@2kt,75.0,3\n"
        "xor_retrieve,dev,ja,all,R@5kt,50.0,2\n"
        "xor_retrieve,dev,ko,all,R@5kt,100.0,1\n"
        "xor_retrieve,dev,avg,all,R@5kt,75.0,3\n"
    )
    # The official prediction format, ranks as in the (merged) runs, gold order.
    assert json.loads(preds.read_text(encoding="utf-8")) == [
        {"id": "q1", "lang": "ja", "ctxs": ["Tokyo is the capital of Japan.", "Seoul, the capital."]},
        {"id": "q2", "lang": "ja", "ctxs": ["The old capital had many temples."]},
        {"id": "q3", "lang": "ko", "ctxs": ["Seoul, the capital.", "Tokyo is the capital of Japan."]},
    ]


def test_cli_xor_full(files):
    out = files["dir"] / "full.csv"
    english = files["dir"] / "english.jsonl"
    write_questions(english, [gq("q1", "ja", "Japan")])
    rc = cli("--task", "xor_full", "--gold", files["gold"], "--english-gold", english, "--run", files["ja"],
             "--run", files["ko"], "--corpus", files["corpus"], "--out", out, "--top-k", "1", "--missing", "skip")
    assert rc == 0
    with open(out, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["subset"], r["lang"]): (r["value"], r["count"]) for r in rows} == {
        ("english", "ja"): ("100.0", "1"), ("english", "avg"): ("100.0", "1"),
        ("target", "ja"): ("0.0", "1"), ("target", "ko"): ("100.0", "1"), ("target", "avg"): ("50.0", "2"),
        ("all", "ja"): ("50.0", "2"), ("all", "ko"): ("100.0", "1"), ("all", "avg"): ("75.0", "3"),
    }


def test_cli_counts_questions_missing_from_the_run_as_misses_by_default(files, capsys):
    out = files["dir"] / "eval.csv"
    rc = cli("--task", "xor_retrieve", "--gold", files["gold"], "--run", files["ja"], files["ko"],
             "--corpus", files["corpus"], "--out", out, "--languages", "ja", "ko")
    assert rc == 0
    assert "1 of 4 gold questions are not in the run: counted as misses" in capsys.readouterr().err
    # q4 (ko) found nothing: ko is 1 hit of 2.
    assert "xor_retrieve,dev,ko,all,R@2kt,50.0,2\n" in out.read_text(encoding="utf-8")


def test_cli_malformed_gold_is_a_one_line_error(files, capsys):
    bad = files["dir"] / "bad.jsonl"
    bad.write_text('{"id": "q1", "question": "q?", "answers": ["a"], "lang": "ja"}\n{"id": "q2", \n',
                   encoding="utf-8")
    out = files["dir"] / "eval.csv"
    rc = cli("--task", "xor_retrieve", "--gold", bad, "--run", files["ja"], "--corpus", files["corpus"], "--out", out)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("error: ") and f"{bad}:2" in err[0]
    assert not out.exists()


def test_cli_overlapping_runs_are_an_error(files, capsys):
    out = files["dir"] / "eval.csv"
    rc = cli("--task", "xor_retrieve", "--gold", files["gold"], "--run", files["ja"], "--run", files["ja"],
             "--corpus", files["corpus"], "--out", out)
    assert rc == 1
    assert "error: " in capsys.readouterr().err and not out.exists()


def test_cli_english_gold_needs_xor_full(files, capsys):
    rc = cli("--task", "xor_retrieve", "--gold", files["gold"], "--english-gold", files["gold"],
             "--run", files["ja"], "--corpus", files["corpus"], "--out", files["dir"] / "eval.csv")
    assert rc == 1
    assert "--english-gold" in capsys.readouterr().err
