"""Seed replicates (ablations.seeds, umr.seeds): which nodes are replicated, how the tables and
plots summarise them, and the gain criterion, on hand-made metrics rows with hand-worked values."""

from __future__ import annotations

import csv
import io
import math

import pytest

from conftest import REPO
from test_report import fixture_config
from umr import ablations, expected, plots, tables
from umr.config import load_config_files, validate_config
from umr.lineage import DistillSpec, Node, RerankSpec
from umr.metrics import describe
from umr.plan import ablation_only_evaluations, main_evaluations, seed_evaluations
from umr.report import report_files
from umr.seeds import GainTest, Stat, distill_seeds, gain_test, replicate_path

SEEDS = [12345, 7, 9]


def seed_of(path: str) -> int | None:
    """The distillation seed of a node path (its last distillation step's), None without one."""
    for part in reversed(path.strip("/").split("/")):
        if part.startswith(DistillSpec.PREFIX):
            return DistillSpec.parse(part).seed
    return None


def seeded_config(seeds=SEEDS, **changes) -> dict:
    config = fixture_config()
    config["ablations"] = {**config["ablations"], "seeds": list(seeds)}
    config["umr"] = {**config["umr"], **changes}
    return validate_config(config)


def test_the_configured_seed_comes_first_and_is_not_repeated():
    assert distill_seeds(seeded_config([7, 12345, 9])) == (12345, 7, 9)
    assert distill_seeds(seeded_config([])) == (12345,)


def test_a_replicate_changes_the_seed_of_every_distillation_and_nothing_else():
    r, d = RerankSpec("lm", top_k=10), DistillSpec(seed=12345)
    node = Node("mc").child(r, d).child(r, d)
    reps = replicate_path(node.reranked(RerankSpec("lm", top_k=60)), (12345, 7))
    assert reps[0] == node.reranked(RerankSpec("lm", top_k=60))
    assert reps[1] == f"mc/{r.tag}/{DistillSpec(seed=7).tag}/{r.tag}/{DistillSpec(seed=7).tag}/rr-lm_official_mean_k60"
    assert seed_of(reps[1]) == 7 and seed_of("mc") is None
    # Nothing to replicate: no distillation, BM25, a single seed.
    assert replicate_path("mc", (1, 2)) == replicate_path("mc/rr-lm_official_mean_k10", (1, 2)) == ()
    assert replicate_path("baselines/bm25", (1, 2)) == ()
    assert replicate_path(node.path, (12345,)) == ()


def test_stat_is_mean_and_sample_sd():
    s = Stat.of([1.0, 2.0, 6.0])  # mean 3, deviations -2 -1 3: (4 + 1 + 9) / 2 = 7
    assert (s.mean, s.n) == (3.0, 3) and s.sd == pytest.approx(math.sqrt(7))
    assert s.se == pytest.approx(math.sqrt(7) / math.sqrt(3))
    one = Stat.of([4.0])
    assert one.sd is None and one.se is None


def test_gain_criterion_every_seed_above_and_mean_over_two_standard_errors():
    ok = gain_test([45.0, 44.0, 47.0], 40.0)  # gains 5, 4, 7: mean 5.33, sd 1.53, SE 0.88
    assert ok.gains == (5.0, 4.0, 7.0) and ok.holds
    assert ok.describe() == ("+5.33 (SE 0.88, n = 3; per seed +5.00, +4.00, +7.00); every seed above: yes; "
                             "mean ≥ 2 SE: yes")
    below = gain_test([45.0, 39.0, 47.0], 40.0)  # one seed below the reference
    assert not below.every_seed_above and not below.holds
    noisy = GainTest((0.5, 0.2, 9.0))  # all above, mean 3.23, sd 4.99, SE 2.88: 3.23 < 5.77
    assert noisy.every_seed_above and not noisy.mean_over_two_se
    assert not GainTest((3.0,)).holds  # one seed: no standard error, no claim
    assert gain_test([45.0, None], 40.0) is None


def test_the_plan_replicates_table_3s_distilled_rows_only():
    config = seeded_config(control_negated_teacher=True)
    reps = seed_evaluations(config)
    nodes = {e.node for e in reps}
    # iterations 1 and 2 and "+ rerank" of iteration 2, three seeds each
    assert len(reps) == 9 and {seed_of(n) for n in nodes} == set(SEEDS)
    assert not any("_neg" in n for n in nodes)
    assert seed_evaluations(seeded_config([])) == []
    # The replicates belong to the ablations target; `all` trains the first seed only.
    assert {seed_of(e.node) for e in main_evaluations(config)} == {None, 12345}
    assert {e.node for e in reps if seed_of(e.node) != 12345} <= {e.node for e in ablation_only_evaluations(config)}


def test_each_ablation_variant_has_one_replicate_per_seed():
    plan = ablations.plan(seeded_config())
    single = ablations.plan(seeded_config([]))
    assert len(plan.variants) == 3 * len(single.variants)
    slice_ = plan.slice("temperature")
    assert [v.value("temperature") for v in slice_] == [1, 0.1] and {v.seed for v in slice_} == {12345}
    replicas = plan.replicas(slice_[0])
    assert [seed_of(e.node) for e in replicas] == SEEDS
    assert replicas[0] == slice_[0].evaluation
    assert {e.node.replace("_s7", "_s12345") for e in replicas[1:2]} == {slice_[0].evaluation.node}
    assert single.replicas(single.slice("temperature")[0]) == ()


def test_mode_none_still_replicates_the_main_chain():
    config = seeded_config()
    config["ablations"]["mode"] = "none"
    evals = ablations.evaluations(config)
    assert {seed_of(e.node) for e in evals} == {None, *SEEDS}
    config["ablations"]["seeds"] = []
    assert ablations.evaluations(config) == []


def test_the_seed_is_a_column_not_a_variant():
    r = RerankSpec("lm", top_k=10)
    node = Node("mc").child(r, DistillSpec(seed=7))
    info = describe(node.path, {}, r, DistillSpec(seed=12345))
    assert info["variant"] == "default" and info["seed"] == 7 and info["system"] == "UMR"
    changed = describe(Node("mc").child(r, DistillSpec(temperature=1.0, seed=7)).path, {}, r, DistillSpec())
    assert changed["variant"] == "temperature=1.0"


# -- tables and plots from hand-made rows ------------------------------------------------------
def metric_rows(scores: dict[str, tuple[float, float]], task: str = "xor_retrieve") -> list[dict]:
    """Rows of metrics.csv: node -> (R@2kt, R@5kt) language averages."""
    return [{"task": task, "split": "dev", "node": node, "subset": "all", "lang": "avg", "metric": m,
             "value": str(v), "system": "", "seed": str(seed_of(node) or "")}
            for node, values in scores.items() for m, v in zip(("R@2kt", "R@5kt"), values)]


def seeds_scores(config: dict) -> dict[str, tuple[float, float]]:
    spec = tables.table_spec(config, "seeds")
    rows = {r.label: r for r in spec.rows}
    iter1 = rows["UMR (iter=1)"].replicas
    iter2 = rows["UMR (iter=2)"].replicas
    out = {spec.reference: (40.0, 50.0), rows["+ rerank"].node: (48.0, 55.0)}
    out |= dict(zip(iter1, [(45.0, 52.0), (44.0, 50.0), (47.0, 54.0)]))
    out |= dict(zip(iter2, [(46.0, 51.0), (46.0, 53.0)]))  # the third seed's run is missing
    return out


def test_seeds_table_shows_mean_sd_and_n():
    config = seeded_config()
    spec = tables.table_spec(config, "seeds")
    table = tables.build_table(spec, metric_rows(seeds_scores(config)))
    md = tables.to_markdown(table)
    assert "| Model | R@2kt | R@5kt | n |" in md
    assert "| mContriever | 40.00 | 50.00 | 1 |" in md
    # iteration 1: R@2kt 45, 44, 47 -> 45.33 ± 1.53; R@5kt 52, 50, 54 -> 52.00 ± 2.00
    assert "| UMR (iter=1) | 45.33 ± 1.53 | 52.00 ± 2.00 | 3 |" in md
    # iteration 2: two seeds with a score -> n = 2; R@2kt 46, 46 -> sd 0
    assert "| UMR (iter=2) | 46.00 ± 0.00 | 52.00 ± 1.41 | 2 |" in md
    assert ("Gain of UMR (iter=1) over the initial retriever: R@2kt +5.33 (SE 0.88, n = 3; per seed +5.00, +4.00, "
            "+7.00); every seed above: yes; mean ≥ 2 SE: yes; R@5kt +2.00 (SE 1.15, n = 3; per seed +2.00, +0.00, "
            "+4.00); every seed above: no; mean ≥ 2 SE: no.") in md
    rows = list(csv.reader(io.StringIO(tables.to_csv(table))))
    assert rows[0] == ["Model", "R@2kt", "R@2kt sd", "R@5kt", "R@5kt sd", "n"]
    assert ["mContriever", "40.0", "", "50.0", "", "1"] in rows
    assert ["UMR (iter=1)", "45.3333", "1.5275", "52.0", "2.0", "3"] in rows
    assert r"45.33 $\pm$ 1.53" in tables.to_latex(table)


def test_seeds_table_is_absent_with_one_seed_and_built_by_the_ablations_target():
    assert tables.table_spec(seeded_config([]), "seeds").kind == "absent"
    assert not any("seeds" in f for t in ("all", "ablations") for f in report_files(seeded_config([]), "r", t))
    config = seeded_config()
    assert "r/tables/seeds.md" in report_files(config, "r", "ablations")
    assert "r/tables/seeds.md" not in report_files(config, "r", "all")
    assert "r/tables/table3.md" in report_files(config, "r", "all")  # Table 3 stays single-seed


def test_table_5_rows_are_means_over_seeds():
    config = seeded_config()
    spec = tables.table_spec(config, "table5")
    scores = {}
    for row, base in zip(spec.rows, (30.0, 40.0)):
        scores |= {node: (base + i, base) for i, node in enumerate(row.replicas)}  # +0, +1, +2: mean +1, sd 1
    md = tables.to_markdown(tables.build_table(spec, metric_rows(scores)))
    assert "| 1 | 31.00 ± 1.00 | 30.00 ± 0.00 | 3 |" in md
    assert "| 0.1 (default) | 41.00 ± 1.00 | 40.00 ± 0.00 | 3 |" in md
    assert len(spec.evaluations) == 6


def test_knob_plots_average_over_seeds_and_the_iteration_plot_does_not():
    config = seeded_config()
    spec = plots.plot_spec(config, "temperature")
    assert [len(r) for r in spec.replicas] == [3, 3]
    assert plots.plot_spec(config, "iterations").replicas == ()
    rows = []
    for reps, base in zip(spec.replicas, (30.0, 40.0)):
        rows += metric_rows({node: (base + 2 * i, 0.0) for i, node in enumerate(reps)})
    data = plots.series(spec, rows)
    assert data["R@2kt"]["avg"] == [32.0, 42.0]
    assert plots.replicate_values(spec, rows)["R@2kt"]["avg"][0] == [30.0, 32.0, 34.0]


def test_plot_with_spread_is_drawn(tmp_path):
    config = seeded_config()
    spec = plots.plot_spec(config, "temperature")
    rows = []
    for reps, base in zip(spec.replicas, (30.0, 40.0)):
        rows += metric_rows({node: (base + i, base) for i, node in enumerate(reps)})
    rows += metric_rows({spec.reference: (20.0, 25.0)})
    plots.draw(spec, rows, tmp_path / "t.png", tmp_path / "t.pdf")
    assert (tmp_path / "t.png").stat().st_size > 1000 and (tmp_path / "t.pdf").stat().st_size > 1000


def test_expected_scores_name_the_seed_of_a_replicate():
    rows = []
    for seed, value in ((12345, 45.0), (7, 44.0)):
        rows.append({"system": "UMR", "variant": "default", "iteration": "1", "task": "xor_retrieve", "split": "dev",
                     "subset": "all", "lang": "avg", "metric": "R@2kt", "value": str(value), "seed": str(seed),
                     "node": f"mc/rr/kd_s{seed}"})
    conditions = expected.conditions_from_metrics(rows)
    assert [c.match.get("seed") for c in conditions] == [12345, 7]
    assert [c.name for c in conditions] == ["UMR (iter=1) seed=12345", "UMR (iter=1) seed=7"]
    outcomes = expected.check(expected.Expected(conditions), rows)
    assert all(o.ok for o in outcomes)
    # one seed only (make toy): the condition still names its seed, so that it keeps matching
    # exactly one row once make ablations adds the replicates
    alone = expected.conditions_from_metrics(rows[:1])
    assert [(c.name, c.match.get("seed")) for c in alone] == [("UMR (iter=1)", 12345)]
    assert [o.ok for o in expected.check(expected.Expected(alone), rows)] == [True]


def test_shipped_toy_record_names_the_seed_of_every_umr_condition():
    """Replicates share system, variant and iteration: a UMR condition without its seed would be ambiguous."""
    record = expected.load_expected(expected.EXPECTED_DIR / "toy.yaml")
    umr = [c for c in record.conditions if c.match["system"].startswith("UMR")]
    assert umr and all("seed" in c.match for c in umr)
    seeds = load_config_files(REPO / "config.yaml")["ablations"]["seeds"]
    assert {c.match["seed"] for c in umr} == set(seeds)
    replicated = [c for c in umr if c.match["task"] == "xor_retrieve" and c.match["variant"] == "default"
                  and c.match["system"] == "UMR" and c.match["iteration"] == 1]
    assert sorted(c.match["seed"] for c in replicated) == sorted(seeds)
