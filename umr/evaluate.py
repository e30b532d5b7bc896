"""Retrieval evaluation on XOR-TyDi QA: XOR-Retrieve R@2kt/R@5kt and XOR-Full top-k.

**XOR-Retrieve** (`xor_retrieve_recall`) reproduces the official
`evals/eval_xor_retrieve.py` of AkariAsai/XORQA, which produced the paper's numbers:

- it iterates over the *predictions*: a question of the gold file that has no
  prediction is ignored, not counted as a miss (so it changes no score), and a
  prediction whose id is not in the gold file is skipped. The pipeline builds its
  predictions with `build_predictions`, whose default (`--missing empty`, the one the
  rules use) gives every gold question a prediction: a question absent from a run
  counts as a miss. `--missing skip` reproduces the official script (docs/deviations.md);
- answers equal to exactly `"yes"` or `"no"` (case-sensitive: `"Yes"` is kept) are
  dropped; a question with no answer left is not counted. Unlike the official script,
  empty or whitespace-only answers are dropped too: an empty string is a substring of
  any text, so it would make a question a hit with no passage at all;
- each passage *text* (titles never) is tokenized on its own with NLTK's
  `word_tokenize(text)` (English Punkt sentence splitting, then the Treebank word
  tokenizer); the tokens are concatenated in rank order, stopping after the first
  passage that brings the total to at least N, truncated to N and joined with
  single spaces;
- a question is a hit if any answer is a raw, case-sensitive substring of that
  string (so an answer `"don't"` never matches the tokenized `"do n't"`);
- per-language score = hits / count * 100; the reported score is the unweighted
  mean over the languages that counted at least one question.

**XOR-Full** (`xor_full_topk`, paper Table 7; there is no official script): a
question is a hit at k if any answer is found in the *text* (not title) of one of
its top-k passages, matched per passage. Two hit tests (`HIT_TESTS`, `--hit`):
`substring` (the default) looks for an answer as a raw, case-sensitive substring of
the untokenized text (passages are multilingual, and the English Treebank tokenizer
would only distort non-English text); `dpr_has_answer` is DPR's `has_answer`
(NFD-normalised, SimpleTokenizer words, uncased, the answer's words a contiguous run
of the text's: whole words only, and a run of letters is one word, so an answer inside
an unspaced Japanese sentence or a Korean word with its particle is a miss). Titles
are left out as in R@kt and in DPR's answer check (which the UMR code base
inherits). Questions are split into
`english` (the id is also in the XOR-Retrieve gold file, whose answers are English
spans; a hit counts English or target-language answers) and `target` (only
target-language answers); `all` is their union. The yes/no filter and the
missing-prediction semantics are those of R@kt, so both tasks treat a run alike.

Scores come back as tidy rows (`COLUMNS`) in percent: one per language that
counted a question, plus `avg` (macro average; its count is the total number of
questions counted). A (subset, language) with no question has no row.

NLTK's Punkt model is shipped in `umr/resources/nltk_data` (built by
`scripts/make_punkt_data.py`) because it cannot be downloaded at run time.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import statistics
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from umr.corpus import Corpus
from umr.errors import ConfigError, UMRError
from umr.io import atomic_file, log, run_cli
from umr.languages import XOR_LANGUAGES
from umr.records import GoldQuestion, Run, read_gold, read_trec_run

NLTK_DATA = Path(__file__).resolve().parent / "resources" / "nltk_data"

TASKS = ("xor_retrieve", "xor_full")
BUDGETS: tuple[int, ...] = (2000, 5000)  # R@2kt, R@5kt
TOP_K: tuple[int, ...] = (1, 5, 20)
SUBSETS = ("english", "target", "all")
COLUMNS = ("task", "split", "lang", "subset", "metric", "value", "count")
# The official script compares with `answer not in ["yes", "no"]`: exact and case-sensitive.
YES_NO = frozenset({"yes", "no"})
# XOR-Full answer-in-passage tests (`xor_full_topk`); the first is the default.
HIT_TESTS = ("substring", "dpr_has_answer")


@dataclass(frozen=True, slots=True)
class Prediction:
    """One question's ranked passages, as the official prediction file holds them."""

    id: str
    lang: str
    ctxs: tuple[str, ...]  # passage texts, best first


@dataclass(slots=True)
class Tally:
    """Hits among the questions counted for one language (and metric, subset)."""

    hits: int = 0
    count: int = 0

    @property
    def value(self) -> float:
        # (hits / count) * 100, in the official script's order of operations.
        return self.hits / self.count * 100


# metric name -> language -> tally
Scores = dict[str, dict[str, Tally]]


def span_answers(answers: Iterable[str]) -> list[str]:
    """Answers without the yes/no ones, which no passage text can be checked for, and without
    blank ones, which every text would contain."""
    return [a for a in answers if a not in YES_NO and a.strip()]


@functools.cache
def word_tokenizer():
    """NLTK's `word_tokenize`, imported on first use: importing nltk (scipy.stats with it) takes
    ~4 s, and every Snakemake job re-reads the workflow, which imports this module."""
    import nltk
    from nltk.tokenize import word_tokenize

    if str(NLTK_DATA) not in nltk.data.path:
        # Appended, not prepended: a user's own punkt_tab install (same model) still wins.
        nltk.data.path.append(str(NLTK_DATA))
    return word_tokenize


@functools.lru_cache(maxsize=1 << 17)
def tokens(text: str) -> tuple[str, ...]:
    """NLTK `word_tokenize(text)` (sentence splitting on), with a clear error if Punkt is missing.

    Memoised: the same passages come back for many questions and runs, and
    tokenizing them dominates the evaluation's time.
    """
    try:
        return tuple(word_tokenizer()(text))
    except LookupError:
        raise UMRError(
            f"NLTK's punkt_tab English model is missing (expected under {NLTK_DATA}); "
            "reinstall umr or run scripts/make_punkt_data.py"
        ) from None


def token_prefix(ctxs: Iterable[str], budget: int) -> list[str]:
    """The first `budget` tokens of the passages, tokenized one by one in rank order."""
    out: list[str] = []
    for text in ctxs:
        out += tokens(text)
        if len(out) >= budget:
            break
    return out[:budget]


@functools.cache
def _dpr_word_pattern():
    """The pattern of DPR's SimpleTokenizer (dpr/utils/tokenizers.py): a run of letters, marks and
    numbers, or else any one character that is neither a separator (Z) nor a control or format
    character (C), with its flags. Compiled on first use: `regex` is only needed for this test."""
    import regex

    return regex.compile(r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])",
                         flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)


def dpr_words(text: str) -> list[str]:
    """The words DPR's `has_answer` compares: SimpleTokenizer tokens of the NFD form, lower-cased."""
    return [m.group().lower() for m in _dpr_word_pattern().finditer(unicodedata.normalize("NFD", text))]


@functools.lru_cache(maxsize=1 << 17)
def _dpr_key(text: str) -> str:
    """The text's DPR words, each between single spaces (empty without words).

    No word holds a space (U+0020 is a separator), so an answer's key is a substring of a
    passage's key exactly when the answer's words are a contiguous run of the passage's: DPR's
    sliding-window comparison, done by one substring search. An answer without words has the
    key "", found in every text, as DPR matches an empty word list everywhere. Memoised: the same
    passages come back for many questions and runs.
    """
    words = dpr_words(text)
    return f" {' '.join(words)} " if words else ""


def dpr_has_answer(answers: Iterable[str], text: str) -> bool:
    """DPR's `has_answer(answers, text, SimpleTokenizer(), "string")` (dpr/data/qa_validation.py).

    The text and each answer are NFD-normalised, tokenized by SimpleTokenizer and
    lower-cased; a hit if some answer's words occur as a contiguous run of the text's words.
    So case, NFC/NFD forms and spacing around punctuation do not matter, but a match must
    cover whole words: "cat" is not in "concatenate", nor "東京" in "首都は東京です" (one word:
    a run of letters). As in DPR, an answer without words (empty, blank) matches any text;
    in `xor_full_topk` blank answers are dropped and other wordless ones match nothing.
    """
    key = _dpr_key(text)
    return any(_dpr_key(answer) in key for answer in answers)


def _check_hit(hit: str) -> str:
    if hit not in HIT_TESTS:
        raise ConfigError(f"hit: expected one of {', '.join(HIT_TESTS)}, got {hit!r}")
    return hit


def recall_metric(budget: int) -> str:
    """`R@2kt` for 2000 tokens; a budget that is not whole thousands reads `R@150t`."""
    return f"R@{budget // 1000}kt" if budget % 1000 == 0 else f"R@{budget}t"


def _check_positive(name: str, values: Sequence[int]) -> tuple[int, ...]:
    if not values or any(v < 1 for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"{name}: expected distinct positive integers, got {list(values)}")
    return tuple(sorted(values))


def xor_retrieve_recall(predictions: Iterable[Prediction], gold: Mapping[str, GoldQuestion],
                        budgets: Sequence[int] = BUDGETS) -> Scores:
    """Official XOR-Retrieve R@kt for each token budget: {metric: {lang: Tally}}.

    Only predictions whose id is in `gold` count; gold questions without a
    prediction are ignored, exactly as in `eval_xor_retrieve.py` (`build_predictions`
    decides whether an absent question gets an empty prediction, i.e. a miss).
    """
    budgets = _check_positive("budgets", budgets)
    scores: Scores = {recall_metric(b): {} for b in budgets}
    for pred in predictions:
        if pred.id not in gold:
            continue
        answers = span_answers(gold[pred.id].answers)
        if not answers:
            continue
        # One tokenization serves every budget: the first N tokens of the
        # concatenation do not depend on how many more passages were tokenized.
        prefix = token_prefix(pred.ctxs, budgets[-1])
        for budget in budgets:
            joined = " ".join(prefix[:budget])
            tally = scores[recall_metric(budget)].setdefault(pred.lang, Tally())
            tally.count += 1
            tally.hits += any(a in joined for a in answers)
    return scores


def xor_full_topk(predictions: Iterable[Prediction], gold: Mapping[str, GoldQuestion],
                  english_gold: Mapping[str, GoldQuestion] | None,
                  top_k: Sequence[int] = TOP_K, *, hit: str = "substring") -> dict[str, Scores]:
    """XOR-Full answer presence in the top-k passages: {subset: {metric: {lang: Tally}}}.

    `gold` is the XOR-Full file (target-language answers), `english_gold` the
    XOR-Retrieve file of the same split (English answers). Without
    `english_gold` the english/target split is unknown and only `all` is scored.
    `hit` is the answer-in-passage test (`HIT_TESTS`): `substring`, a raw case-sensitive
    substring of the passage text, or `dpr_has_answer` (see `dpr_has_answer`). Both count
    the same questions; under `dpr_has_answer` an answer without DPR words (e.g. only
    zero-width characters) matches nothing, as blank answers are dropped for both.
    """
    top_k = _check_positive("top_k", top_k)
    _check_hit(hit)
    split_known = english_gold is not None
    scores = {subset: {f"Top-{k}": {} for k in top_k} for subset in (SUBSETS if split_known else ("all",))}
    for pred in predictions:
        if pred.id not in gold:
            continue
        answers = span_answers(gold[pred.id].answers)
        subset = "target"
        if split_known and pred.id in english_gold:
            subset = "english"
            answers += span_answers(english_gold[pred.id].answers)
        if not answers:
            continue
        if hit == "substring":
            found = [any(a in text for a in answers) for text in pred.ctxs[:top_k[-1]]]
        else:
            # Each passage is tokenized once (memoised) for every k; wordless answers never count.
            keys = [key for key in map(_dpr_key, answers) if key]
            found = [any(key in _dpr_key(text) for key in keys) for text in pred.ctxs[:top_k[-1]]]
        for k in top_k:
            is_hit = any(found[:k])
            for name in (subset, "all") if split_known else ("all",):
                tally = scores[name][f"Top-{k}"].setdefault(pred.lang, Tally())
                tally.count += 1
                tally.hits += is_hit
    return scores


def _lang_order(langs: Iterable[str]) -> list[str]:
    """The paper's language order, then any other language alphabetically."""
    rank = {lang: i for i, lang in enumerate(XOR_LANGUAGES)}
    return sorted(langs, key=lambda lang: (rank.get(lang, len(rank)), lang))


def _rows(task: str, split: str, subset: str, scores: Scores) -> list[dict]:
    def row(lang: str, metric: str, value: float, count: int) -> dict:
        return dict(zip(COLUMNS, (task, split, lang, subset, metric, value, count)))

    rows: list[dict] = []
    for metric, per_lang in scores.items():
        if not per_lang:
            continue
        rows += [row(lang, metric, per_lang[lang].value, per_lang[lang].count) for lang in _lang_order(per_lang)]
        # statistics.mean, as the official script averages (exactly rounded).
        avg = statistics.mean(t.value for t in per_lang.values())
        rows.append(row("avg", metric, avg, sum(t.count for t in per_lang.values())))
    return rows


def evaluate_run(task: str, split: str, gold: Mapping[str, GoldQuestion], predictions: Sequence[Prediction],
                 english_gold: Mapping[str, GoldQuestion] | None = None,
                 budgets: Sequence[int] = BUDGETS, top_k: Sequence[int] = TOP_K,
                 *, hit: str = "substring") -> list[dict]:
    """Score a run's predictions; tidy rows with the columns of `COLUMNS`.

    xor_retrieve: metrics `R@2kt`, `R@5kt` (one per budget), subset `all`;
    xor_full: `Top-k` for each k, subsets `english`, `target`, `all` (only `all`
    without `english_gold`), with the answer test `hit` (`HIT_TESTS`; R@kt has only its
    own). A UMRError if no question could be counted.
    """
    _check_hit(hit)
    if task == "xor_retrieve":
        if english_gold is not None:
            raise ConfigError("english_gold: only xor_full uses the XOR-Retrieve gold file")
        if hit != "substring":
            raise ConfigError(f"hit: only xor_full has a choice of hit test (R@kt is the official one), got {hit!r}")
        rows = _rows(task, split, "all", xor_retrieve_recall(predictions, gold, budgets))
    elif task == "xor_full":
        if english_gold is not None and not english_gold.keys() & gold.keys():
            log.warning("no question of the English (XOR-Retrieve) gold file is in the XOR-Full gold file: "
                        "wrong split? every question is scored as target-language only")
        by_subset = xor_full_topk(predictions, gold, english_gold, top_k, hit=hit)
        rows = [row for subset, scores in by_subset.items() for row in _rows(task, split, subset, scores)]
    else:
        raise ConfigError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    if not rows:
        raise UMRError("no question could be scored: no run question is in the gold file with a non-yes/no answer")
    return rows


def merge_runs(paths: Sequence[str | Path]) -> Run:
    """Several TREC runs (e.g. one per language) as one; a question in two files is an error."""
    merged: Run = {}
    source: dict[str, Path] = {}
    for path in map(Path, paths):
        for qid, ranked in read_trec_run(path).items():
            if qid in merged:
                raise UMRError(f"{path}: question {qid!r} is also in {source[qid]}; runs to merge must not overlap")
            merged[qid] = ranked
            source[qid] = path
    return merged


def build_predictions(gold: Mapping[str, GoldQuestion], run: Run, corpus: Corpus,
                      missing: str = "empty") -> list[Prediction]:
    """The gold questions with their passage texts, in gold-file order.

    A gold question absent from the run is, with `missing="empty"` (the pipeline's
    default), a prediction with no passages, i.e. a miss: every retriever here lists
    every question, so an absent one is a search that found nothing (BM25 can). With
    `missing="skip"` it is left out, as the official script ignores questions absent
    from a prediction file. Run questions absent from the gold file are dropped.
    Both cases are logged with their counts.
    """
    if missing not in ("empty", "skip"):
        raise ValueError(f"missing must be 'empty' or 'skip', not {missing!r}")
    absent = sum(qid not in run for qid in gold)
    if absent:
        log.warning("%d of %d gold questions are not in the run: %s", absent, len(gold),
                    "counted as misses (no passages)" if missing == "empty" else
                    "ignored, not counted (official eval_xor_retrieve.py semantics)")
    extra = sum(qid not in gold for qid in run)
    if extra:
        log.warning("%d run questions are not in the gold file and are ignored", extra)
    return [
        Prediction(qid, q.lang, tuple(p.text for p in corpus.get_many([docid for docid, _ in run.get(qid, [])])))
        for qid, q in gold.items()
        if qid in run or missing == "empty"
    ]


def write_predictions(path: str | Path, predictions: Iterable[Prediction]) -> None:
    """The official prediction file: a JSON list of {"id", "lang", "ctxs": [passage texts]}."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump([{"id": p.id, "lang": p.lang, "ctxs": list(p.ctxs)} for p in predictions],
                      handle, ensure_ascii=False)
            handle.write("\n")


def write_rows(path: str | Path, rows: Iterable[dict]) -> None:
    """Rows as CSV; values with repr() (shortest exact float), so output is byte-stable."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            for row in rows:
                writer.writerow({**row, "value": repr(float(row["value"]))})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.evaluate",
                                description="Score retrieval runs on XOR-Retrieve (R@2kt/R@5kt) or XOR-Full (top-k).")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--split", default="dev", help="split label written to the CSV (default: dev)")
    p.add_argument("--gold", required=True, help="gold JSONL of the task (XOR-Retrieve or XOR-Full, with answers)")
    p.add_argument("--english-gold", help="xor_full only: XOR-Retrieve gold JSONL of the same split (English answers)")
    p.add_argument("--run", required=True, nargs="+", action="extend",
                   help="TREC run(s); several are merged (disjoint question ids)")
    p.add_argument("--corpus", required=True, help="DPR TSV corpus the run's passage ids refer to")
    p.add_argument("--corpus-offsets", help="offset table of the corpus (python -m umr.corpus)")
    p.add_argument("--top-k", type=int, nargs="+", default=list(TOP_K), help="xor_full cut-offs (default: 1 5 20)")
    p.add_argument("--hit", choices=HIT_TESTS, default=HIT_TESTS[0],
                   help="xor_full answer test: substring = raw case-sensitive substring of the passage text "
                        "(this pipeline's default); dpr_has_answer = DPR's has_answer (NFD-normalised, tokenised, "
                        "uncased token-sequence match; the only top-k hit function in the official code base)")
    p.add_argument("--languages", nargs="+", help="score only gold questions of these languages")
    p.add_argument("--missing", choices=["empty", "skip"], default="empty",
                   help="gold questions absent from the run: misses (default) or ignored (official script)")
    p.add_argument("--out", required=True, help="output CSV")
    p.add_argument("--predictions-out", help="also write the official JSON prediction file")
    return p


def _main(args: argparse.Namespace) -> None:
    if args.english_gold is not None and args.task != "xor_full":
        raise ConfigError("--english-gold: only --task xor_full uses it")
    if args.hit != HIT_TESTS[0] and args.task != "xor_full":
        raise ConfigError("--hit: only --task xor_full has a choice of answer test")
    gold = read_gold(args.gold)
    if args.languages:
        gold = {qid: q for qid, q in gold.items() if q.lang in args.languages}
    english_gold = read_gold(args.english_gold) if args.english_gold is not None else None
    if args.task == "xor_full" and english_gold is None:
        log.warning("no --english-gold: XOR-Full is scored on subset 'all' only")
    run = merge_runs(args.run)
    with Corpus(args.corpus, args.corpus_offsets, source=args.run) as corpus:
        predictions = build_predictions(gold, run, corpus, args.missing)
    rows = evaluate_run(args.task, args.split, gold, predictions, english_gold, top_k=args.top_k, hit=args.hit)
    if args.predictions_out:
        write_predictions(args.predictions_out, predictions)
    write_rows(args.out, rows)
    for row in rows:
        if row["lang"] == "avg":
            log.info("%s %s %s %s: %.2f (%d questions)", row["task"], row["subset"], row["metric"], row["lang"],
                     row["value"], row["count"])


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
