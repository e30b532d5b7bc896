"""Tables, plots and expected scores, on a hand-written metrics fixture (tests/fixtures/report/).

The fixture's rows are what `rule metrics` writes for FIXTURE_CONFIG's lineage nodes;
the expected Markdown tables beside it were written by hand.
"""

from __future__ import annotations

import copy
import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from umr import expected, plots, tables
from umr.config import validate_config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "report"
METRICS = FIXTURES / "metrics.csv"
REPO = Path(__file__).resolve().parents[1]

FIXTURE_CONFIG = {
    "dataset": "fx",
    "benchmark": "toy",
    "languages": ["ja", "ru"],
    "toy": {"questions": {"xor_retrieve": {"train": 4, "dev": 5}}},
    "models": {"mc": {"kind": "retriever", "display": "mContriever", "toy": {}},
               "lm": {"kind": "reranker", "display": "mT5", "toy": {}}},
    "retrieval": {"top_k": 20},
    "umr": {"retriever": "mc", "iterations": 2, "control_negated_teacher": False,
            "rerank": {"reranker": "lm", "top_k": 10},
            "distill": {"batch_size": 4, "passages_per_question": 4, "epochs": 1, "learning_rate": 1e-4,
                        "warmup_steps": 1}},
    "ablations": {"temperature": [1, 0.1], "batch_size": [4, 8, 16], "in_batch_negatives": [True, False]},
}


def fixture_config(paper: bool = False) -> dict:
    config = copy.deepcopy(FIXTURE_CONFIG)
    if paper:  # the same lineage under the paper's benchmark: hub models, no toy sizes
        config.update(benchmark="xor-tydi", models={"mc": {"kind": "retriever", "display": "mContriever", "hub": "x/mc"},
                                                    "lm": {"kind": "reranker", "display": "mT5", "hub": "x/lm"}})
        config.pop("toy")
        config["baselines"] = {"bm25": {"enabled": False}}
    return validate_config(config)


@pytest.fixture(scope="module")
def rows():
    return tables.read_metrics(METRICS)


@pytest.mark.parametrize("table_id", ["table2", "table3", "table4", "table5", "table6", "table7"])
def test_toy_tables_match_the_hand_written_markdown(table_id, rows):
    table = tables.build_table(tables.table_spec(fixture_config(), table_id), rows)
    assert tables.to_markdown(table) == (FIXTURES / f"{table_id}.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("table_id", ["table3", "table5"])
def test_paper_configuration_shows_the_papers_numbers_beside_ours(table_id, rows):
    table = tables.build_table(tables.table_spec(fixture_config(paper=True), table_id), rows)
    assert tables.to_markdown(table) == (FIXTURES / f"{table_id}-paper.md").read_text(encoding="utf-8")


def test_csv_and_latex_renderings(rows):
    table = tables.build_table(tables.table_spec(fixture_config(), "table6"), rows)
    assert tables.to_csv(table).splitlines()[:3] == [
        "Batch size,R@2kt,R@5kt", "4 (default),60.0,80.0", "8,58.3333,91.6667"]
    tex = tables.to_latex(table)
    assert r"\begin{tabular}{lrr}" in tex and r"8 & 58.33 & 91.67 \\" in tex
    assert r"\caption{Table 6: Batch size on XOR-Retrieve dev (\%)}" in tex
    absent = tables.build_table(tables.table_spec(fixture_config(), "table2"), rows)
    assert "so it is not built" in tables.to_latex(absent)
    note_rows = list(csv.reader(io.StringIO(tables.to_csv(absent))))
    assert note_rows[0] == ["note"] and note_rows[1][0].startswith("# Table 2 (XOR-Full question answering")


def test_table1_marks_reported_rows_and_shows_languages(rows):
    toy = tables.build_table(tables.table_spec(fixture_config(), "table1"), rows)
    assert toy.header == ["Model", "R@2kt Ja", "R@2kt Ru", "R@2kt Avg", "R@5kt Ja", "R@5kt Ru", "R@5kt Avg"]
    assert toy.rows == [["UMR (iter=2), dev", 60.0, 70.0, 65.0, 80.0, 90.0, 85.0]]
    paper = tables.build_table(tables.table_spec(fixture_config(paper=True), "table1"), rows)
    labels = [r[0] for r in paper.rows]
    assert labels == ["mDPR (reported)", "MT+DPR (reported)", "UMR (paper, test)", "UMR (iter=2), dev"]
    assert paper.rows[0][1:] == [29.1, 35.3, 38.8, 37.3, 44.0, 48.0]  # mDPR: Ja, Ru, Avg of both metrics


def test_table_spec_inputs_are_only_its_conditions():
    config = fixture_config()
    spec5 = tables.table_spec(config, "table5")
    nodes = [e.node for e in spec5.evaluations]
    assert len(nodes) == 2 and all("/kd-" in n and n.count("/rr-") == 1 for n in nodes)
    assert not any(n.endswith("_k10") for n in nodes)  # no reranked evaluation: Table 5 needs no reranking
    assert {e.task for e in tables.table_spec(config, "table7").evaluations} == {"xor_full"}
    assert tables.table_spec(config, "table2").evaluations == ()
    spec = tables.table_spec(config, "table3")
    assert tables.TableSpec.from_json(spec.to_json()) == spec


def test_paper_scores_averages_agree_with_their_languages():
    """A transcription check: each reported average is the mean of its languages (to the paper's rounding)."""
    p = tables.paper_scores()
    langs = p["languages"]
    checked = 0
    for table, metrics in (("table1", ("R@2kt", "R@5kt")), ("table2", ("F1",))):
        for row in p[table]["rows"]:
            for metric in metrics:
                values = [row[metric][lang] for lang in langs]
                if None in values or row[metric]["avg"] is None:
                    continue
                assert abs(sum(values) / len(values) - row[metric]["avg"]) <= 0.051, (table, row["label"], metric)
                checked += 1
    assert checked == 9  # Table 1: 3 rows x 2 metrics; Table 2: 3 rows with every language


def test_plots_are_drawn_from_metrics(tmp_path, rows):
    config = fixture_config()
    for plot_id in ("temperature", "batch_size", "iterations"):
        spec = plots.plot_spec(config, plot_id)
        png, pdf = tmp_path / f"{plot_id}.png", tmp_path / f"{plot_id}.pdf"
        plots.draw(spec, rows, png, pdf)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000
    data = plots.series(plots.plot_spec(config, "iterations"), rows)
    assert data["R@2kt"]["avg"] == [30.0, 60.0, 65.0]  # iteration 0 (the initial retriever), 1, 2
    assert plots.default_plots(config) == ["temperature", "batch_size", "iterations"]


def test_expected_scores_print_ok_and_fail(rows):
    outcomes = expected.check(expected.load_expected(FIXTURES / "expected.yaml"), rows)
    status = {(o.condition.name, o.metric): (o.ok, o.problem.split(":")[0]) for o in outcomes}
    assert status == {
        ("UMR (iter=2)", "R@2kt"): (True, ""),
        ("UMR (iter=2)", "R@5kt"): (True, ""),
        ("UMR (iter=1) [batch_size=8]", "R@2kt"): (True, ""),
        ("UMR (iter=1) [batch_size=8]", "R@5kt"): (False, "off by +1.67"),
        ("temperature 1 by setting", "R@2kt"): (True, ""),
        ("mContriever top-20, English answers", "Top-20"): (True, ""),
        ("mDPR (not in the metrics)", "R@2kt"): (False, "missing"),
        ("UMR iteration 1, every variant", "R@2kt"): (False, "ambiguous"),
    }
    out = io.StringIO()
    assert expected.report(outcomes, out) == 1
    lines = out.getvalue().splitlines()
    assert [line[:4] for line in lines[:-1]] == ["OK  ", "OK  ", "OK  ", "FAIL", "OK  ", "OK  ", "FAIL", "FAIL"]
    assert lines[-1] == "5 of 8 OK, 3 FAIL"
    # a wider tolerance passes the off-by-1.67 score; missing rows can be skipped
    loose = expected.check(expected.load_expected(FIXTURES / "expected.yaml"), rows, tolerance=2.0, allow_missing=True)
    assert [o.problem.split(":")[0] for o in loose if not o.ok] == ["skipped", "ambiguous"]


def test_expected_command_line_and_write_round_trip(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "umr.expected", "--metrics", str(METRICS), *map(str, args)],
                              capture_output=True, text=True, cwd=REPO)

    failed = run("--expected", FIXTURES / "expected.yaml")
    assert failed.returncode == 1 and "FAIL" in failed.stdout and failed.stdout.count("OK  ") == 5
    written = tmp_path / "toy.yaml"
    assert run("--write", written).returncode == 0
    recorded = expected.load_expected(written)
    names = [c.name for c in recorded.conditions]
    assert "UMR (iter=2)" in names and "UMR (iter=1) [temperature=1.0]" in names and "BM25" in names
    ok = run("--expected", written, "--tolerance", "0.01")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1] == f"{len(ok.stdout.splitlines()) - 1} of {len(ok.stdout.splitlines()) - 1} OK"


def test_paper_expected_scores_come_from_the_papers_tables():
    paper = expected.paper_expected()
    by_name = {c.name: c for c in paper.conditions}
    assert by_name["Table 3: UMR (iter=2)"].scores == {"R@2kt": 41.68, "R@5kt": 51.94}
    assert by_name["Table 5: temperature = 1"].match["variant"] == "temperature=1.0"
    assert "Table 5: temperature = 0.1" not in by_name  # contradicts Table 3's same setting
    assert sum(1 for c in paper.conditions if c.name.startswith("Table 7")) == 12
    assert paper.tolerance == expected.PAPER_TOLERANCE


# -- supervised systems' runs supplied by the user (config `supervised`) -------------------------
def supplied_config(paper: bool) -> dict:
    config = copy.deepcopy(FIXTURE_CONFIG)
    if paper:  # and without mGenQ: its row is then the paper's number, "not run"
        config = {k: v for k, v in fixture_config(paper=True).items() if k in FIXTURE_CONFIG or k == "baselines"}
        config["baselines"] = {"bm25": {"enabled": False}, "mgenq": {"enabled": False}}
    config["supervised"] = {"mdpr": {"xor_retrieve": {"dev": "mdpr_dev.json"}},
                            "cora": {"xor_full": {"dev": ["cora.ja.trec", "cora.ru.trec"]}},
                            "mine": {"display": "My DPR", "xor_retrieve": {"dev": "mine.trec"}}}
    return validate_config(config)


def test_supplied_runs_replace_the_reported_rows():
    paper = supplied_config(paper=True)
    t1 = tables.table_spec(paper, "table1")
    assert [r.label for r in t1.rows] == ["mDPR", "MT+DPR (reported)", "My DPR", "UMR (paper, test)",
                                          "UMR (iter=2), dev"]
    assert {e.node for e in t1.evaluations} >= {"supplied/mdpr", "supplied/mine"}
    t3 = tables.table_spec(paper, "table3")
    assert [r.label for r in t3.rows][:3] == ["mDPR", "My DPR", "mGenQ (not run)"]
    t7 = tables.table_spec(paper, "table7")
    assert t7.rows[0] == tables.Row("CORA", node="supplied/cora", paper="cora")
    toy = supplied_config(paper=False)
    assert [r.label for r in tables.table_spec(toy, "table3").rows][:4] == ["mDPR", "My DPR", "mGenQ", "BM25"]
    assert [r.label for r in tables.table_spec(toy, "table1").rows] == ["mDPR", "My DPR", "UMR (iter=2), dev"]


def test_supplied_run_rows_are_built_beside_the_papers_numbers(tmp_path, rows):
    results = tmp_path / "results" / "fx"
    evals = []
    for name, r2, r5 in (("mdpr", 45.0, 55.0), ("mine", 12.5, 25.0)):
        path = results / "xor_retrieve" / "supplied" / name / "eval" / "dev.csv"
        path.parent.mkdir(parents=True)
        path.write_text("task,split,lang,subset,metric,value,count\n"
                        f"xor_retrieve,dev,ja,all,R@2kt,{r2},5\nxor_retrieve,dev,avg,all,R@2kt,{r2},5\n"
                        f"xor_retrieve,dev,avg,all,R@5kt,{r5},5\n", encoding="utf-8")
        evals.append(path)
    supplied = tables.collect_rows(evals, None, [], None, None)
    assert {(r["node"], r["system"], r["variant"]) for r in supplied} == {
        ("supplied/mdpr", "mdpr", "supplied"), ("supplied/mine", "mine", "supplied")}
    assert tables.results_dir_of(evals) == results
    table = tables.build_table(tables.table_spec(supplied_config(paper=True), "table3"), rows + supplied)
    assert table.rows[:2] == [["mDPR", 45.0, 40.5, 55.0, 50.2], ["My DPR", 12.5, None, 25.0, None]]


def test_results_dir_is_read_off_evaluation_paths():
    assert tables.results_dir_of(["results/toy/xor_full/mc/eval/dev.csv",
                                  "results/toy/xor_retrieve/supplied/mdpr/eval/dev.csv"]) == Path("results/toy")
    with pytest.raises(tables.UMRError, match="not an evaluation output"):
        tables.results_dir_of(["results/toy/tables/table3.md"])
    with pytest.raises(tables.UMRError, match="2 results directories"):
        tables.results_dir_of(["a/xor_full/mc/eval/dev.csv", "b/xor_full/mc/eval/dev.csv"])


def test_supplied_prediction_json_is_scored_like_our_runs(tmp_path):
    import json

    from umr import supplied

    gold = tmp_path / "dev.jsonl"
    gold.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in (
        {"id": "q1", "question": "いつ?", "answers": ["1867"], "lang": "ja"},
        {"id": "q2", "question": "кто?", "answers": ["Pushkin"], "lang": "ru"},
        {"id": "q3", "question": "где?", "answers": ["Moscow"], "lang": "ru"})), encoding="utf-8")
    predictions = tmp_path / "mdpr_dev.json"
    predictions.write_text(json.dumps([
        {"id": "q1", "lang": "ja", "ctxs": [{"text": "It happened in 1867 ."}, {"text": "x"}]},
        {"id": "q2", "lang": "ru", "ctxs": ["Tolstoy wrote it ."]}]), encoding="utf-8")
    out = tmp_path / "eval.csv"
    rows = supplied.score("xor_retrieve", "dev", gold, [predictions], out)
    scores = {(r["metric"], r["lang"]): (r["value"], r["count"]) for r in rows}
    assert scores[("R@2kt", "ja")] == (100.0, 1)
    assert scores[("R@2kt", "ru")] == (0.0, 2)  # q3 has no prediction: a miss, as for our runs
    assert scores[("R@2kt", "avg")] == (50.0, 3)
    assert out.read_text(encoding="utf-8").startswith("task,split,lang,subset,metric,value,count\n")
    skipped = supplied.score("xor_retrieve", "dev", gold, [predictions], out, missing="skip")
    assert {(r["metric"], r["lang"]): r["count"] for r in skipped}[("R@2kt", "ru")] == 1
    with pytest.raises(supplied.UMRError, match="not both"):
        supplied.is_json(["a.json", "b.trec"])


def test_ablations_on_xor_full_use_its_top_k_columns(rows):
    config = copy.deepcopy(FIXTURE_CONFIG)
    config["ablations"] = {**config["ablations"], "task": "xor_full"}
    config = validate_config(config)
    spec = tables.table_spec(config, "table5")
    assert spec.kind == "topk" and {e.task for e in spec.evaluations} == {"xor_full"}
    assert tables.build_table(spec, rows).header[1:4] == ["English answers Top-1", "English answers Top-5",
                                                          "English answers Top-20"]
    plot = plots.plot_spec(config, "temperature")
    assert plot.metrics == ("Top-1", "Top-5", "Top-20") and plot.task == "xor_full"
    assert plots.reference_values(plot, rows) == {"Top-1": 5.0, "Top-5": 25.0, "Top-20": 45.0}


# -- ablation grids -----------------------------------------------------------------------------
def open_questions_config(**ablations) -> dict:
    """The fixture plus a second reranker LM: the paper's open questions as grids."""
    config = copy.deepcopy(FIXTURE_CONFIG)
    config["models"]["lm2"] = {"kind": "reranker", "display": "mT5-b", "toy": {"seed": 2}}
    config["ablations"] = ablations
    return validate_config(config)


def test_one_knob_at_a_time_variants_are_lineage_nodes_sharing_the_reranking():
    from umr import ablations
    from umr.lineage import Node

    plan = ablations.plan(fixture_config())
    tau = plan.slice("temperature")
    assert [v.value("temperature") for v in tau] == [1, 0.1]
    parents = {Node.parse(v.evaluation.node).parent.reranked(Node.parse(v.evaluation.node).steps[-1][0])
               for v in plan.variants if v.iteration == 1}
    assert parents == {"mc/rr-lm_official_mean_k10"}  # every iteration-1 variant reuses one reranking
    assert [v.value("batch_size") for v in plan.slice("batch_size")] == [4, 8]
    assert dict(plan.skipped) == {"batch_size": ((16, "batch size 16 > 8 training questions"),)}
    assert [v.iteration for v in plan.slice("iterations")] == [1, 2]


def test_open_questions_each_get_a_grid_and_a_plot():
    config = open_questions_config(temperature=[], batch_size=[], in_batch_negatives=[], reranker=["lm", "lm2"],
                                   iterations=[3], rerank_top_k=[5, 10, 20, 50])
    assert plots.default_plots(config) == ["iterations", "top_k", "reranker"]
    assert [x for x, _ in plots.plot_spec(config, "reranker").points] == ["mT5", "mT5-b"]
    assert [x for x, _ in plots.plot_spec(config, "iterations").points] == ["0", "1", "2", "3"]
    top_k = plots.plot_spec(config, "top_k")
    assert [x for x, _ in top_k.points] == ["5", "10", "20"]
    assert top_k.notes == ("not run: rerank_top_k = 50 (top-k 50 > retrieval.top_k 20)",)
    nodes = [node for _, node in top_k.points]
    assert nodes[0].startswith("mc/rr-lm_official_mean_k5/kd-") and nodes[2].startswith("mc/rr-lm_official_mean_k20/")
    from umr import ablations

    with pytest.raises(ablations.ConfigError, match="ablations.reranker"):
        ablations.plan(open_questions_config(reranker=["nope"]))


def test_full_grid_runs_every_combination_at_every_iteration():
    from umr import ablations

    config = open_questions_config(mode="grid", temperature=[0.1, 1], batch_size=[4, 8], in_batch_negatives=[],
                                   iterations=[2])
    plan = ablations.plan(config)
    combos = {v.settings for v in plan.variants}
    assert len(combos) == 4 and len(plan.variants) == 4 * 2  # 2 τ x 2 batch sizes, iterations 1 and 2
    deep = [v for v in plan.variants if v.iteration == 2 and set(v.changed) == {"temperature", "batch_size"}]
    assert len(deep) == 1 and deep[0].evaluation.node.count("kd-t1_b8_") == 2  # the settings at every iteration
    assert [v.value("temperature") for v in plan.slice("temperature")] == [0.1, 1]
    assert tables.table_spec(config, "ablations").rows[-1].label.endswith("(iter=2)")


def test_html_rendering_for_the_report(rows):
    table = tables.build_table(tables.table_spec(fixture_config(paper=True), "table3"), rows)
    page = tables.to_html(table)
    assert page.startswith("<!DOCTYPE html>") and "<h3>Table 3: Reranking and iterations on XOR-Retrieve dev (%)</h3>" in page
    assert ('<tr class="paper"><td>mDPR (reported)</td><td class="num">–</td><td class="num">40.50</td>') in page
    assert "<th>R@2kt (paper)</th>" in page
    absent = tables.to_html(tables.build_table(tables.table_spec(fixture_config(), "table2"), rows))
    assert "<em>Not built:</em> Table 2 (XOR-Full question answering" in absent and "<table>" not in absent
