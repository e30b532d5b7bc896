"""The paper's tables from metrics rows, as Markdown, CSV and LaTeX.

A table has a *spec* (`table_spec`: its rows, each a lineage node of this
configuration, a baseline matched by system name, or a number the paper reports)
and is *built* from metrics rows (`build_table`: the rows of
`results/<dataset>/metrics.csv`, or the same rows collected straight from the
evaluation files of its conditions by `umr.metrics.collect`, which is what the
Snakemake rule does so a table costs only the jobs it needs).

Tables (paper numbering): 1 XOR-Retrieve R@2kt/R@5kt per language; 2 XOR-Full
QA (only with a reader: there is none, so it says why it is absent); 3 reranking
and iterations; 4 in-batch negatives; 5 temperature; 6 batch size; 7 XOR-Full
retrieval top-1/5/20 by answer language; `ablations` every ablation variant.
For benchmark xor-tydi each table shows the paper's numbers
(`resources/paper_scores.yaml`) beside ours; on the toy benchmark they are left
out, since toy numbers are not comparable with them.

Rows that are not UMR lineage nodes: the baselines (mGenQ, BM25) are matched by
the system name `umr.metrics.describe` gives their planned evaluations, so a
baseline appears as soon as the plan evaluates it; supervised systems (mDPR,
MT+DPR, CORA) are scored from run files the user supplies (config `supervised`,
`umr.supplied`), else shown as the paper's reported numbers, marked "(reported)".

By hand: `python -m umr.tables --config config.yaml --metrics results/toy/metrics.csv
--table table3 --out-dir results/toy/tables`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from umr import ablations as ablations_mod
from umr.errors import UMRError
from umr.io import atomic_file, log, run_cli
from umr.lineage import DistillSpec, RerankSpec
from umr.plan import SEEDS_TASK, Evaluation, evaluations, last_rerank_tasks, report_rerank, umr_chain
from umr.seeds import GainTest, Stat, distill_seeds, gain_test, replicate_path
from umr.supplied import is_supplied, supplied_node

PAPER_SCORES = Path(__file__).resolve().parent / "resources" / "paper_scores.yaml"
TABLES = ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "ablations", "seeds")
RECALLS = ("R@2kt", "R@5kt")
TOPK = ("Top-1", "Top-5", "Top-20")
SUBSETS = {"english": "English answers", "target": "Target-language answers", "all": "All"}
BASELINES = ("mGenQ", "BM25")  # optional rows, matched by the system name their evaluations get (in this order)
# Supervised systems of the paper: rows from a supplied run (config `supervised`) or reported numbers.
SUPERVISED_NAMES = {"mdpr": "mDPR", "mt-dpr": "MT+DPR", "cora": "CORA"}
MISSING_NOTE = ("A question a system returns no passage for counts as a miss (the official XOR script skips it; "
                "docs/deviations.md, row 6).")
HIT_NOTES = {"substring": "as a raw, case-sensitive substring; config evaluate.hit",
             "dpr_has_answer": "DPR's has_answer: normalised, tokenised, uncased; config evaluate.hit"}
TOY_NOTE = ("Toy benchmark with tiny models: the numbers show the pipeline works end to end; they are not "
            "comparable with the paper's (XOR-TyDi QA), which are shown only for benchmark xor-tydi.")


@lru_cache(maxsize=1)
def paper_scores() -> dict:
    with open(PAPER_SCORES, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


# -- specs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    label: str
    node: str | None = None  # our evaluated node (task-relative path)
    system: str | None = None  # a baseline row: metrics rows with this system name
    paper: str | None = None  # key of the paper's row (tables 1, 3, 7) or the knob's value (4-6)
    reported: bool = False  # the paper's number only (a supervised system not run here)
    replicas: tuple[str, ...] = ()  # `node` under every distillation seed (umr.seeds): mean ± sd, n


@dataclass(frozen=True)
class TableSpec:
    id: str
    title: str
    kind: str  # recall (R@2kt/R@5kt averages), recall_langs (per language), topk (XOR-Full), qa, absent
    task: str = "xor_retrieve"
    split: str = "dev"
    languages: tuple[str, ...] = ()
    row_header: str = "Model"
    rows: tuple[Row, ...] = ()
    paper: bool = False  # show the paper's numbers beside ours
    paper_suffix: str = "paper"  # label of the paper's numbers: "<row> (paper)" / "<column> (paper)"
    notes: tuple[str, ...] = ()
    absent: str = ""  # why the table is not built
    precision: int = 2
    reference: str | None = None  # seeds table: the initial retriever's node, whose gains it tests
    evaluations: tuple[Evaluation, ...] = field(default=(), compare=False)  # its inputs

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("evaluations")
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TableSpec":
        data = json.loads(text)
        data["rows"] = tuple(Row(**{**r, "replicas": tuple(r["replicas"])}) for r in data["rows"])
        for key in ("languages", "notes"):
            data[key] = tuple(data[key])
        return cls(**data)


def _display(config: dict) -> dict[str, str]:
    return {name: model.get("display", name) for name, model in config["models"].items()}


def _iter_label(i: int) -> str:
    return f"UMR (iter={i})"


def _baseline_rows(config: dict, task: str, split: str) -> tuple[list[Row], list[Evaluation]]:
    """BM25 / mGenQ rows: planned evaluations whose system name (umr.metrics.describe) is a baseline's."""
    from umr.metrics import describe

    display, rows, evals = _display(config), [], []
    for e in evaluations(config):
        if e.task != task or e.split != split:
            continue
        try:
            system = describe(e.node, display, None, None)["system"]
        except (ValueError, UMRError):  # a node metrics.describe does not know (e.g. a supplied run)
            continue
        if system in BASELINES and system not in [r.system for r in rows]:
            rows.append(Row(system, system=system, paper=system.lower()))
            evals.append(e)
    order = {name: i for i, name in enumerate(BASELINES)}
    return sorted(rows, key=lambda r: order[r.system]), evals


def supplied_systems(config: dict, task: str, split: str) -> dict[str, str]:
    """name -> display of the supervised runs supplied for task/split (config `supervised`), in config order."""
    return {name: entry.get("display") or SUPERVISED_NAMES.get(name, name)
            for name, entry in config.get("supervised", {}).items() if entry.get(task, {}).get(split)}


def _supervised_rows(config: dict, task: str, split: str, keys: Sequence[str], paper: bool,
                     table_keys: Sequence[str]) -> list[Row]:
    """The paper's supervised rows `keys` (each from a supplied run, else reported) and any other supplied run.

    `table_keys`: the paper rows of this table, so a supplied run is matched with the paper's number."""
    supplied = supplied_systems(config, task, split)
    rows = []
    for key in keys:
        if key in supplied:
            rows.append(Row(supplied[key], node=supplied_node(key), paper=key if key in table_keys else None))
        elif paper:
            rows.append(Row(f"{SUPERVISED_NAMES[key]} (reported)", paper=key, reported=True))
    rows += [Row(display, node=supplied_node(name), paper=name if name in table_keys else None)
             for name, display in supplied.items() if name not in keys]
    return rows


def _skipped_notes(plan: ablations_mod.Ablations, knobs: Iterable[str]) -> list[str]:
    notes = []
    for knob in knobs:
        for value, reason in plan.skipped.get(knob, ()):
            notes.append(f"Not run: {knob} = {value} ({reason}).")
    return notes


def _main_chain_spec(config: dict, table_id: str) -> TableSpec:
    split = config["eval_splits"][0]
    paper = config["benchmark"] == "xor-tydi"
    chain = umr_chain(config)
    rerank = report_rerank(config)  # the "+ rerank" rows
    initial = _display(config).get(chain[0].root, chain[0].root)
    n = len(chain) - 1
    notes = [] if paper else [TOY_NOTE]
    notes.append(MISSING_NOTE)
    if table_id == "table1":
        task = "xor_retrieve"
        rows = _supervised_rows(config, task, split, ("mdpr", "mt-dpr"), paper, ("mdpr", "mt-dpr", "umr"))
        if paper:
            rows.append(Row("UMR (paper, test)", paper="umr", reported=True))
            notes.append("The paper's numbers are XOR-Retrieve *test* numbers; ours are on "
                         f"{split} (test answers are not public). Supervised systems without a run under config key "
                         "`supervised` are the paper's reported numbers, marked (reported).")
        elif not any(r.node for r in rows):
            notes.append("Supervised rows (mDPR, MT+DPR) come from runs given under config key `supervised`, "
                         "or as the paper's reported numbers for benchmark xor-tydi.")
        rows.append(Row(f"{_iter_label(n)}, {split}", node=chain[-1].path))
        return TableSpec("table1", f"XOR-Retrieve {split} R@2kt and R@5kt per language (%)", "recall_langs",
                         task, split, tuple(config["languages"]), rows=tuple(rows), paper=paper,
                         paper_suffix="paper, test", notes=tuple(notes), precision=1)
    if table_id == "table3":
        task = "xor_retrieve"
        rows = _supervised_rows(config, task, split, ("mdpr",), paper, ("mdpr",))
        baselines, _ = _baseline_rows(config, task, split)
        if paper and not any(r.system == "mGenQ" for r in baselines):  # baselines.mgenq.enabled false
            rows.append(Row("mGenQ (not run)", paper="mgenq", reported=True))
        rows += baselines
        rows += [Row(initial, node=chain[0].path, paper="initial"),
                 Row("+ rerank", node=chain[0].reranked(rerank), paper="initial+rerank")]
        rows += [Row(_iter_label(i), node=chain[i].path, paper=f"iter{i}" if i <= 2 else None) for i in range(1, n + 1)]
        if task in last_rerank_tasks(config):
            rows.append(Row("+ rerank", node=chain[-1].reranked(rerank), paper="iter2+rerank" if n == 2 else None))
        return TableSpec("table3", f"Reranking and iterations on XOR-Retrieve {split} (%)", "recall", task, split,
                         rows=tuple(rows), paper=paper, notes=tuple(notes))
    if table_id == "table7":
        task = "xor_full"
        rows = _supervised_rows(config, task, split, ("cora",), paper, ("cora",))
        rows += _baseline_rows(config, task, split)[0]
        rows += [Row(initial, node=chain[0].path, paper="initial"),
                 Row(f"{initial}+rerank", node=chain[0].reranked(rerank), paper="initial+rerank")]
        rows += [Row(_iter_label(i), node=chain[i].path, paper=f"iter{i}" if i <= 2 else None) for i in range(1, n + 1)]
        if task in last_rerank_tasks(config):  # not in the paper's Table 7
            rows.append(Row(f"{_iter_label(n)}+rerank", node=chain[-1].reranked(rerank)))
        hit = HIT_NOTES[config["evaluate"]["hit"]]
        notes.append("English answers: questions with annotated English answers; target-language answers: "
                     f"questions with only target-language answers; a hit is any answer in the top-k passages ({hit}).")
        return TableSpec("table7", f"XOR-Full {split} retrieval: answer in the top-1/5/20 passages (%)", "topk",
                         task, split, rows=tuple(rows), paper=paper, notes=tuple(notes), precision=1)
    raise KeyError(table_id)


_ABLATION_TABLES = {"table4": "in_batch_negatives", "table5": "temperature", "table6": "batch_size"}
_ABLATION_TITLES = {
    "table4": "With and without in-batch negatives on {task} {split} (%)",
    "table5": "Teacher temperature τ on {task} {split} (%)",
    "table6": "Batch size on {task} {split} (%)",
}
_TASK_NAMES = {"xor_retrieve": "XOR-Retrieve", "xor_full": "XOR-Full"}


def _value_label(knob: str, value, default) -> str:
    if knob == "in_batch_negatives":  # the paper's labels: "UMR (iter=1)" and "- in-batch negative"
        return "UMR (iter=1)" if value == default else f"{'+' if value else '-'} in-batch negatives"
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} (default)" if value == default else text


def _replica_nodes(plan: ablations_mod.Ablations, variant: ablations_mod.Variant) -> tuple[str, ...]:
    return tuple(e.node for e in plan.replicas(variant))


def _seeds_notes(seeds: tuple[int, ...]) -> list[str]:
    if len(seeds) < 2:
        return []
    return [f"Distilled rows: mean ± sample standard deviation over distillation seeds {', '.join(map(str, seeds))} "
            "(config ablations.seeds; n = seeds with a score); rows that involve no distillation do not depend "
            "on the seed (n = 1). metrics_ablations.csv has one row per seed."]


def _seeds_spec(config: dict) -> TableSpec:
    """Table 3 with every distilled row replicated over the distillation seeds (ablations.seeds)."""
    seeds = distill_seeds(config)
    if len(seeds) < 2:
        return TableSpec("seeds", "", "absent", SEEDS_TASK,
                         absent="ablations.seeds lists a single distillation seed: nothing to replicate.")
    if SEEDS_TASK not in config["umr"]["tasks"]:
        return TableSpec("seeds", "", "absent", SEEDS_TASK,
                         absent=f"umr.tasks ({', '.join(config['umr']['tasks'])}) does not include {SEEDS_TASK}.")
    base = _main_chain_spec(config, "table3")
    rows = tuple(replace(r, replicas=replicate_path(r.node, seeds)) if r.node and not is_supplied(r.node) else r
                 for r in base.rows)
    notes = [*base.notes, *_seeds_notes(seeds),
             "Gain over the initial retriever, per seed: every seed above it, and the mean gain at least twice its "
             "standard error, is the criterion the toy's claims are checked with (tests/test_dag.py)."]
    return replace(base, id="seeds", title=f"{base.title}, {len(seeds)} distillation seeds", rows=rows,
                   notes=tuple(notes), reference=umr_chain(config)[0].path)


def _ablation_spec(config: dict, table_id: str) -> TableSpec:
    plan = ablations_mod.plan(config)
    paper = config["benchmark"] == "xor-tydi" and plan.task == "xor_retrieve"
    split = plan.splits[0]
    notes = ([] if config["benchmark"] == "xor-tydi" else [TOY_NOTE]) + [MISSING_NOTE]
    title_args = {"task": _TASK_NAMES[plan.task], "split": split}
    kind = "recall" if plan.task == "xor_retrieve" else "topk"  # ablations.task xor_full: Table 7's columns
    if table_id == "ablations":
        rows = []
        for v in plan.primary():
            if v.evaluation.split != split:
                continue
            changes = "; ".join(f"{k}={v.value(k)}" for k in v.changed) or "default"
            rows.append(Row(f"{changes} (iter={v.iteration})", node=v.evaluation.node,
                            replicas=_replica_nodes(plan, v)))
        notes += _skipped_notes(plan, ablations_mod.KNOBS)
        notes.append(f"Mode {plan.mode}; defaults: " + ", ".join(
            f"{k}={plan.defaults[k]}" for k in ablations_mod.KNOBS) + ".")
        notes += _seeds_notes(plan.seeds)
        return TableSpec("ablations", f"Ablation variants on {title_args['task']} {split} (%)", kind, plan.task,
                         split, row_header="Variant", rows=tuple(rows), notes=tuple(notes))
    knob = _ABLATION_TABLES[table_id]
    default = plan.defaults[knob]
    rows = []
    for v in plan.slice(knob, split):
        value = v.value(knob)
        rows.append(Row(_value_label(knob, value, default), node=v.evaluation.node, paper=json.dumps(value),
                        replicas=_replica_nodes(plan, v)))
    if plan.mode == "none" or len(rows) < 2:
        notes.append(f"Only the default {knob} = {default} was run (ablations.mode {plan.mode}, "
                     f"ablations.{knob} {list(config.get('ablations', {}).get(knob, []))}).")
    notes += _skipped_notes(plan, [knob])
    notes += _seeds_notes(plan.seeds)
    if paper and table_id in ("table5", "table6"):
        notes.append("The paper's default row here (τ = 0.1 / batch 16) differs from its Tables 3 and 4 "
                     "(41.23 / 51.50) for the same setting; the paper does not say how these ablations were run.")
    header = {"table4": "Model", "table5": "Temperature", "table6": "Batch size"}[table_id]
    return TableSpec(table_id, _ABLATION_TITLES[table_id].format(**title_args), kind, plan.task, split,
                     row_header=header, rows=tuple(rows), paper=paper, notes=tuple(notes))


def table_spec(config: dict, table_id: str) -> TableSpec:
    """What table `table_id` shows under `config` (a validated configuration), with its input evaluations."""
    if table_id not in TABLES:
        raise UMRError(f"unknown table {table_id!r} (known: {', '.join(TABLES)})")
    paper = config["benchmark"] == "xor-tydi"
    if table_id == "table2":
        reason = ("Table 2 (XOR-Full question answering: F1 / EM / BLEU) needs a reader model that answers from the "
                  "retrieved passages (the paper used CORA's mGEN reader); no reader is configured, so it is not built.")
        rows = tuple(Row(r["label"] + " (reported)", paper=r["key"], reported=True)
                     for r in paper_scores()["table2"]["rows"]) if paper else ()
        kind = "qa" if paper else "absent"
        return TableSpec("table2", "XOR-Full test question answering (%)", kind, "xor_full", "test",
                         tuple(config["languages"]), rows=rows, paper=paper, absent=reason, precision=1)
    if table_id in ("table4", "table5", "table6", "ablations"):
        spec = _ablation_spec(config, table_id)
    elif table_id == "seeds":
        spec = _seeds_spec(config)
        if spec.kind == "absent":
            return spec
    else:
        task = "xor_full" if table_id == "table7" else "xor_retrieve"
        if task not in config["umr"]["tasks"]:
            return TableSpec(table_id, "", "absent", task,
                             absent=f"umr.tasks ({', '.join(config['umr']['tasks'])}) does not include {task}.")
        spec = _main_chain_spec(config, table_id)
    evals = []
    for row in spec.rows:
        evals += [Evaluation(spec.task, node, spec.split) for node in row.replicas or [row.node] if node]
    if any(r.system for r in spec.rows):
        evals += _baseline_rows(config, spec.task, spec.split)[1]
    return TableSpec(**{**spec.__dict__, "evaluations": tuple(dict.fromkeys(evals))})


# -- building ---------------------------------------------------------------------------------
Scores = dict[tuple[str, str, str], float]  # (subset, metric, lang) -> value


def index_rows(metric_rows: Iterable[dict]) -> tuple[dict, dict]:
    """Metrics rows -> scores by (task, split, node) and by (task, split, system)."""
    by_node: dict[tuple[str, str, str], Scores] = {}
    by_system: dict[tuple[str, str, str], Scores] = {}
    for r in metric_rows:
        key = (r["subset"], r["metric"], r["lang"])
        value = float(r["value"])
        by_node.setdefault((r["task"], r["split"], r["node"]), {})[key] = value
        by_system.setdefault((r["task"], r["split"], r["system"]), {}).setdefault(key, value)
    return by_node, by_system


def _paper_row(spec: TableSpec, row: Row) -> dict | None:
    if not spec.paper or row.paper is None:
        return None
    table = paper_scores().get(spec.id)
    if table is None:
        return None
    if spec.id in _ABLATION_TABLES:
        knob = _ABLATION_TABLES[spec.id]
        value = json.loads(row.paper)
        return next((r for r in table["rows"] if r[knob] == value), None)
    return next((r for r in table["rows"] if r.get("key") == row.paper), None)


def _columns(spec: TableSpec) -> list[tuple[str, tuple[str, str, str]]]:
    """(header, (subset, metric, lang)) of the value columns."""
    if spec.kind == "recall":
        return [(m, ("all", m, "avg")) for m in RECALLS]
    if spec.kind == "recall_langs":
        langs = list(spec.languages) + ["avg"]
        return [(f"{m} {lang.capitalize()}", ("all", m, lang)) for m in RECALLS for lang in langs]
    if spec.kind == "topk":
        return [(f"{SUBSETS[s]} {k}", (s, k, "avg")) for s in SUBSETS for k in TOPK]
    if spec.kind == "qa":
        langs = list(spec.languages) + ["avg"]
        return ([(f"F1 {lang.capitalize()}", ("all", "F1", lang)) for lang in langs]
                + [(m, ("all", m, "avg")) for m in ("EM", "BLEU")])
    return []


def _paper_value(paper_row: dict | None, key: tuple[str, str, str]) -> float | None:
    """The paper's number for (subset, metric, lang): rows are {metric: value or {lang: value}},
    or {subset: {metric: value}} (Table 7)."""
    if paper_row is None:
        return None
    subset, metric, lang = key
    value = paper_row.get(subset, paper_row).get(metric)
    if isinstance(value, dict):
        value = value.get(lang)
    elif lang != "avg":
        value = None
    return None if value is None else float(value)


@dataclass
class Table:
    id: str
    title: str
    header: list[str]
    rows: list[list]  # first cell a label, then floats, Stats (replicated rows) or None; last cell n if replicated
    notes: list[str]
    absent: str = ""
    precision: int = 2
    replicated: bool = False  # some row is a seed replicate: an "n" column ends the header


def _replicate_scores(by_node: dict, spec: TableSpec, row: Row) -> list[Scores]:
    """The scores of each of a row's replicates, in seed order ({} for a seed without a run)."""
    return [by_node.get((spec.task, spec.split, node), {}) for node in row.replicas]


def _replicated_scores(by_node: dict, spec: TableSpec, row: Row) -> dict[tuple[str, str, str], Stat]:
    """Scores of a row's replicates, summarised per column (seeds without a score are left out)."""
    found = _replicate_scores(by_node, spec, row)
    keys = dict.fromkeys(k for scores in found for k in scores)
    return {k: Stat.of([scores[k] for scores in found if k in scores]) for k in keys}


def _row_n(cells: list) -> int | None:
    """n of a row: its replicates with a score, 1 for a single run, None for the paper's numbers."""
    stats = [c.n for c in cells if isinstance(c, Stat)]
    if stats:
        return max(stats)
    return 1 if any(isinstance(c, float) for c in cells) else None


def _gain_notes(spec: TableSpec, by_node: dict, columns) -> list[str]:
    """The seeds table: each distilled row's per-seed gain over the initial retriever, and the criterion."""
    reference = by_node.get((spec.task, spec.split, spec.reference), {})
    notes = []
    for row in spec.rows:
        if not row.replicas:
            continue
        found = _replicate_scores(by_node, spec, row)
        parts = []
        for name, key in columns:
            test: GainTest | None = gain_test([f.get(key) for f in found], reference[key]) if key in reference else None
            if test is not None:
                parts.append(f"{name} {test.describe(spec.precision)}")
        if parts:
            notes.append(f"Gain of {row.label} over the initial retriever: " + "; ".join(parts) + ".")
    return notes


def build_table(spec: TableSpec, metric_rows: Iterable[dict]) -> Table:
    """Fill a table spec with scores from metrics rows (dicts with the metrics.csv columns)."""
    name = f"Table {spec.id[5:]}" if spec.id.startswith("table") else {"seeds": "Table 3 over seeds"}.get(
        spec.id, "Ablations")
    title = f"{name}: {spec.title}" if spec.title else name
    if spec.kind == "absent":
        return Table(spec.id, title, [], [], list(spec.notes), absent=spec.absent, precision=spec.precision)
    by_node, by_system = index_rows(metric_rows)
    columns = _columns(spec)
    two_columns = spec.paper and spec.kind == "recall"  # paper numbers as columns; else as rows
    replicated = any(r.replicas for r in spec.rows)
    header = [spec.row_header]
    for name, _ in columns:
        header += [name, f"{name} ({spec.paper_suffix})"] if two_columns else [name]
    out_rows: list[list] = []
    for row in spec.rows:
        ours: dict = {}
        if row.replicas:
            ours = _replicated_scores(by_node, spec, row)
        elif row.node:
            ours = by_node.get((spec.task, spec.split, row.node), {})
        elif row.system:
            ours = by_system.get((spec.task, spec.split, row.system), {})
        paper_row = _paper_row(spec, row)
        if two_columns:
            cells = [row.label]
            for _, key in columns:
                cells += [None if row.reported else ours.get(key), _paper_value(paper_row, key)]
            out_rows.append(cells)
        elif row.reported:
            out_rows.append([row.label] + [_paper_value(paper_row, key) for _, key in columns])
        else:
            out_rows.append([row.label] + [ours.get(key) for _, key in columns])
            if paper_row is not None:
                out_rows.append([f"{row.label} ({spec.paper_suffix})"]
                                + [_paper_value(paper_row, key) for _, key in columns])
    notes = list(spec.notes)
    if replicated:
        header.append("n")
        # The paper's numbers are one run each: no n (two-column rows count ours only).
        out_rows = [cells + [None if f"({spec.paper_suffix})" in str(cells[0]) or "(reported)" in str(cells[0])
                             else _row_n(cells[1::2] if two_columns else cells[1:])] for cells in out_rows]
        if spec.reference:
            notes += _gain_notes(spec, by_node, columns)
    return Table(spec.id, title, header, out_rows, notes, absent=spec.absent if spec.kind == "qa" else "",
                 precision=spec.precision, replicated=replicated)


# -- rendering --------------------------------------------------------------------------------
def _fmt(value, precision: int, missing: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    if isinstance(value, Stat):
        mean = f"{value.mean:.{precision}f}"
        return mean if value.sd is None else f"{mean} ± {value.sd:.{precision}f}"
    if isinstance(value, float):
        return f"{value:.{precision}f}"
    return str(value)


def to_markdown(table: Table) -> str:
    lines = [f"**{table.title}**", ""]
    if table.absent:
        lines += [f"*Not built:* {table.absent}", ""]
    if table.header:
        lines.append("| " + " | ".join(table.header) + " |")
        lines.append("|" + "|".join([" --- "] + [" ---: "] * (len(table.header) - 1)) + "|")
        for row in table.rows:
            lines.append("| " + " | ".join(_fmt(c, table.precision, "–") for c in row) + " |")
        lines.append("")
    for note in table.notes:
        lines += [note, ""]
    return "\n".join(lines).rstrip() + "\n"


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")

    def number(c) -> str:
        return "" if c is None else repr(round(c, 4)) if isinstance(c, float) else str(c)

    if table.header and table.replicated:  # each value column as mean and sd; n last
        values = table.header[1:-1]
        writer.writerow([table.header[0], *(h for name in values for h in (name, f"{name} sd")), "n"])
        for row in table.rows:
            cells = [row[0]]
            for c in row[1:-1]:
                cells += [number(c.mean), number(c.sd)] if isinstance(c, Stat) else [number(c), ""]
            writer.writerow(cells + [number(row[-1])])
    elif table.header:
        writer.writerow(table.header)
        for row in table.rows:
            writer.writerow([number(c) for c in row])
    else:
        writer.writerow(["note"])
    for note in ([table.absent] if table.absent else []) + table.notes:
        writer.writerow([f"# {note}"])
    return buf.getvalue()


_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "τ": r"$\tau$", "–": "--", "*": "",
          "±": r"$\pm$", "≥": r"$\geq$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    caption = latex_escape(table.title)
    lines = [f"% {table.id}: generated by umr.tables from the pipeline's evaluations; needs \\usepackage{{booktabs}}",
             r"\begin{table}[t]", r"\centering", r"\small"]
    if table.header:
        lines.append(r"\begin{tabular}{l" + "r" * (len(table.header) - 1) + "}")
        lines.append(r"\toprule")
        lines.append(" & ".join(latex_escape(h) for h in table.header) + r" \\")
        lines.append(r"\midrule")
        for row in table.rows:
            lines.append(" & ".join(latex_escape(_fmt(c, table.precision, "--")) for c in row) + r" \\")
        lines.append(r"\bottomrule")
        lines.append(r"\end{tabular}")
    if table.absent:
        lines.append(r"\par\emph{Not built:} " + latex_escape(table.absent))
    lines.append(rf"\caption{{{caption}}}")
    lines.append(rf"\label{{tab:umr-{table.id}}}")
    lines.append(r"\end{table}")
    for note in table.notes:
        lines.append(f"% {note}")
    return "\n".join(lines) + "\n"


_HTML_STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em}table{border-collapse:collapse}"
               "th,td{padding:3px 9px;border-bottom:1px solid #ccc}th{border-bottom:2px solid #333}"
               "td.num{text-align:right;font-variant-numeric:tabular-nums}tr.paper td{color:#666;font-style:italic}"
               "p.note{color:#444;max-width:60em}")


def to_html(table: Table) -> str:
    """A standalone HTML page of the table (what `snakemake --report` shows inline)."""
    from html import escape

    lines = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{escape(table.title)}</title>",
             f"<style>{_HTML_STYLE}</style></head><body>", f"<h3>{escape(table.title)}</h3>"]
    if table.absent:
        lines.append(f'<p class="note"><em>Not built:</em> {escape(table.absent)}</p>')
    if table.header:
        lines.append("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in table.header)
                     + "</tr></thead><tbody>")
        for row in table.rows:
            label = str(row[0])
            paper = label.endswith(")") and ("(paper" in label or "(reported)" in label)
            cells = [f"<td>{escape(label)}</td>"] + [
                f'<td class="num">{escape(_fmt(c, table.precision, "–"))}</td>' for c in row[1:]]
            lines.append(('<tr class="paper">' if paper else "<tr>") + "".join(cells) + "</tr>")
        lines.append("</tbody></table>")
    lines += [f'<p class="note">{escape(note)}</p>' for note in table.notes]
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def write_table(table: Table, md: str | Path, csv_path: str | Path, tex: str | Path,
                html_path: str | Path | None = None) -> None:
    outputs = [(md, to_markdown(table)), (csv_path, to_csv(table)), (tex, to_latex(table))]
    if html_path is not None:
        outputs.append((html_path, to_html(table)))
    for path, text in outputs:
        with atomic_file(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")


# -- metrics rows -----------------------------------------------------------------------------
def read_metrics(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def results_dir_of(evals: Sequence[str | Path]) -> Path:
    """results/<dataset> of evaluation files `<results>/<task>/<node...>/eval/<split>.csv`.

    The task is the last path component named like a task (node names and tags never are:
    `umr.lineage.NAME` has no underscore), so no directory needs to be passed along."""
    from umr.evaluate import TASKS as TASK_NAMES

    found = set()
    for path in map(Path, evals):
        parts = path.parts
        where = [i for i, part in enumerate(parts[:-2]) if part in TASK_NAMES]
        if not where or parts[-2] != "eval":
            raise UMRError(f"{path}: not an evaluation output (<results>/<task>/<node>/eval/<split>.csv)")
        found.add(Path(*parts[:where[-1]]) if where[-1] else Path("."))
    if len(found) != 1:
        raise UMRError(f"evaluation files from {len(found)} results directories: {', '.join(map(str, sorted(found)))}")
    return found.pop()


def _supplied_rows(path: Path, relative: Path) -> list[dict]:
    """Metrics rows of a supplied run's evaluation (`<task>/supplied/<name>/eval/<split>.csv`)."""
    from umr.metrics import COLUMNS

    task, node = relative.parts[0], "/".join(relative.parts[1:-2])
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for rec in csv.DictReader(handle):
            if rec["task"] != task:
                raise UMRError(f"{path}: task column {rec['task']!r} does not match its path ({task})")
            rows.append({**dict.fromkeys(COLUMNS, ""), **{k: rec[k] for k in ("task", "split", "lang", "subset",
                                                                                "metric", "value", "count")},
                         "system": relative.parts[2], "variant": "supplied", "iteration": "", "reranked": False,
                         "node": node})
    return rows


def collect_rows(evals: Sequence[str | Path], results_dir: str | Path | None, display: Sequence[str],
                 default_rerank_tag: str | None, default_distill_tag: str | None,
                 report_rerank_tag: str | None = None) -> list[dict]:
    """Metrics rows of some evaluation files, exactly as `rule metrics` makes them.

    Supplied runs (`<task>/supplied/<name>`, not lineage nodes) get rows of their own.
    Without `results_dir` it is read off the evaluation files' paths."""
    from umr.metrics import collect

    if not evals:
        return []
    results_dir = Path(results_dir) if results_dir is not None else results_dir_of(evals)
    ours, supplied = [], []
    for path in map(Path, evals):
        try:
            relative = path.relative_to(results_dir)
        except ValueError:
            raise UMRError(f"{path}: evaluation file is not under {results_dir}") from None
        (supplied if len(relative.parts) > 2 and is_supplied("/".join(relative.parts[1:-2])) else ours).append(path)
    rows = collect(ours, results_dir, dict(item.split("=", 1) for item in display),
                   RerankSpec.parse(default_rerank_tag) if default_rerank_tag else None,
                   DistillSpec.parse(default_distill_tag) if default_distill_tag else None,
                   report_rerank=RerankSpec.parse(report_rerank_tag) if report_rerank_tag else None) if ours else []
    for path in supplied:
        rows += _supplied_rows(path, path.relative_to(results_dir))
    return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.tables", description="Build one of the paper's tables.")
    p.add_argument("--table", required=True, choices=TABLES)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--spec", help="the table's spec as JSON (what the Snakemake rule passes)")
    what.add_argument("--config", help="a config file: the spec is derived from it")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--metrics", help="a metrics.csv")
    source.add_argument("--evals", nargs="*", help="evaluation CSVs (<results-dir>/<task>/<node>/eval/<split>.csv)")
    p.add_argument("--results-dir", help="results/<dataset> (with --evals; default: read off their paths)")
    p.add_argument("--display", nargs="*", default=[], help="model display names, NAME=Display (with --evals)")
    p.add_argument("--default-rerank", help="tag of the default reranking (with --evals)")
    p.add_argument("--report-rerank", help="tag of the default \"+ rerank\" reranking "
                   "(with --evals; default: --default-rerank)")
    p.add_argument("--default-distill", help="tag of the default distillation (with --evals)")
    p.add_argument("--out-md")
    p.add_argument("--out-csv")
    p.add_argument("--out-tex")
    p.add_argument("--out-html", help="also an HTML page of the table (the report shows it)")
    p.add_argument("--out-dir", help="write <out-dir>/<table>.md/.csv/.tex/.html")
    return p


def _main(args: argparse.Namespace) -> None:
    if args.spec:
        spec = TableSpec.from_json(args.spec)
    else:
        from umr.config import load_config

        config = load_config(args.config)
        spec = table_spec(config, args.table)
    if spec.id != args.table:
        raise UMRError(f"--spec is for {spec.id}, not {args.table}")
    if args.metrics:
        rows = read_metrics(args.metrics)
    else:
        rows = collect_rows(args.evals, args.results_dir, args.display, args.default_rerank, args.default_distill,
                           args.report_rerank)
    outs = [args.out_md, args.out_csv, args.out_tex]
    html_out = args.out_html
    if args.out_dir:
        outs = [str(Path(args.out_dir) / f"{args.table}.{ext}") for ext in ("md", "csv", "tex")]
        html_out = str(Path(args.out_dir) / f"{args.table}.html")
    if not all(outs):
        raise UMRError("give --out-dir, or all of --out-md, --out-csv and --out-tex")
    table = build_table(spec, rows)
    write_table(table, *outs, html_out)
    outs += [html_out] if html_out else []
    log.info("wrote %s (%d rows)", ", ".join(outs), len(table.rows))


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
