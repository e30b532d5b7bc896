"""Runs of supervised systems supplied by the user (mDPR, MT+DPR, CORA), scored like ours.

SPEC §4: supervised systems are never re-trained here. Their rows in Tables 1, 3
and 7 come from a run file the user supplies (config key `supervised`) or, without
one, are the paper's reported numbers, marked "reported" (`umr.tables`).

A supplied run is either

- TREC run file(s) whose document ids are passage ids of the task's corpus (the
  pipeline's own run format); several files (e.g. one per language) are merged; or
- an official prediction file (``*.json``): a JSON list of ``{"id", "lang", "ctxs"}``
  with the ranked passages as texts, or as objects with a ``"text"`` field (what
  XOR-TyDi QA's DPR scripts write). No corpus is needed for it.

Its scores land beside the lineage, at
``results/<dataset>/<task>/supplied/<name>/eval/<split>.csv``, in the format of
`umr.evaluate` (rule `evaluate_supplied`, rules/report.smk). By hand:

    python -m umr.supplied --task xor_retrieve --split dev --gold results/xor/data/xor_retrieve/dev.jsonl \\
        --run mdpr_dev.json --out mdpr.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from umr.errors import InputFileError, UMRError
from umr.evaluate import HIT_TESTS, TASKS, Prediction, build_predictions, evaluate_run, merge_runs, write_rows
from umr.io import log, run_cli
from umr.records import GoldQuestion, read_gold

SUPPLIED = "supplied"  # node prefix: <task>/supplied/<name>


def supplied_node(name: str) -> str:
    return f"{SUPPLIED}/{name}"


def is_supplied(node: str) -> bool:
    return node.split("/", 1)[0] == SUPPLIED


def is_json(paths: Sequence[str | Path]) -> bool:
    """True for official prediction files, False for TREC runs; a mix is an error."""
    kinds = {Path(p).suffix.lower() == ".json" for p in paths}
    if len(kinds) > 1:
        raise UMRError(f"supplied run {', '.join(map(str, paths))}: give TREC runs or one prediction JSON, not both")
    return kinds == {True}


def read_prediction_json(paths: Sequence[str | Path], gold: dict[str, GoldQuestion],
                         missing: str = "empty") -> list[Prediction]:
    """Official prediction files as `Prediction`s, in gold-file order (like `build_predictions`)."""
    found: dict[str, Prediction] = {}
    for path in map(Path, paths):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputFileError(path, f"unreadable prediction JSON ({err})") from None
        if not isinstance(data, list):
            raise InputFileError(path, 'expected a JSON list of {"id", "lang", "ctxs"}')
        for i, item in enumerate(data):
            try:
                ctxs = tuple(c["text"] if isinstance(c, dict) else str(c) for c in item["ctxs"])
                qid = str(item["id"])
            except (KeyError, TypeError) as err:
                raise InputFileError(path, f"prediction {i + 1}: needs 'id' and 'ctxs' ({err})") from None
            if qid in found:
                raise UMRError(f"{path}: question {qid!r} is predicted twice")
            found[qid] = Prediction(qid, str(item.get("lang") or (gold[qid].lang if qid in gold else "")), ctxs)
    absent = sum(qid not in found for qid in gold)
    if absent:
        log.warning("%d of %d gold questions are not in the predictions: %s", absent, len(gold),
                    "counted as misses" if missing == "empty" else "ignored (official script)")
    out = []
    for qid, q in gold.items():
        if qid in found:
            out.append(Prediction(qid, q.lang, found[qid].ctxs))  # the gold file's language, as for our runs
        elif missing == "empty":
            out.append(Prediction(qid, q.lang, ()))
    return out


def score(task: str, split: str, gold_path: str | Path, runs: Sequence[str | Path], out: str | Path,
          english_gold_path: str | Path | None = None, corpus: str | Path | None = None,
          corpus_offsets: str | Path | None = None, languages: Sequence[str] | None = None,
          missing: str = "empty", hit: str = "substring") -> list[dict]:
    """Score a supplied run; writes and returns `umr.evaluate` rows."""
    gold = read_gold(gold_path)
    if languages:
        gold = {qid: q for qid, q in gold.items() if q.lang in languages}
    english_gold = read_gold(english_gold_path) if english_gold_path else None
    if is_json(runs):
        predictions = read_prediction_json(runs, gold, missing)
    else:
        if corpus is None:
            raise UMRError("a TREC run needs --corpus (the collection its passage ids refer to)")
        from umr.corpus import Corpus

        with Corpus(corpus, corpus_offsets, source=runs) as c:
            predictions = build_predictions(gold, merge_runs(runs), c, missing)
    rows = evaluate_run(task, split, gold, predictions, english_gold, hit=hit)
    write_rows(out, rows)
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.supplied",
                                description="Score a user-supplied run (TREC or official prediction JSON).")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--split", default="dev")
    p.add_argument("--gold", required=True)
    p.add_argument("--english-gold", help="xor_full only: the XOR-Retrieve gold file of the same split")
    p.add_argument("--run", required=True, nargs="+", help="TREC run(s), or prediction JSON file(s)")
    p.add_argument("--corpus", help="the task's DPR TSV corpus (TREC runs only)")
    p.add_argument("--corpus-offsets")
    p.add_argument("--languages", nargs="+")
    p.add_argument("--missing", choices=["empty", "skip"], default="empty",
                   help="gold questions absent from the run: misses (default, as for our runs) or ignored")
    p.add_argument("--hit", choices=HIT_TESTS, default="substring",
                   help="xor_full only: the top-k hit test, as python -m umr.evaluate --hit")
    p.add_argument("--out", required=True)
    return p


def _main(args: argparse.Namespace) -> None:
    rows = score(args.task, args.split, args.gold, args.run, args.out, args.english_gold, args.corpus,
                 args.corpus_offsets, args.languages, args.missing, args.hit)
    for row in rows:
        if row["lang"] == "avg":
            log.info("%s %s %s: %.2f (%d questions)", row["task"], row["subset"], row["metric"], row["value"],
                     row["count"])


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
