"""Each table is a target of its own: on a finished run it schedules only the jobs of its rows.

On the finished mini run (tests/configs/mini.yaml, the `mini_run` fixture), a new teacher
temperature asks Table 5 for one more UMR iteration-1 variant. That variant is distilled from
the initial retriever's *existing* reranking (lineage paths share it), so a dry run of
`results/mini/tables/table5.md` must schedule exactly its distillation, corpus encoding,
index, retrieval and evaluation, once per distillation seed of mini.yaml's ablations.seeds
(and the table) -- no reranking, nothing for other tables.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_workflow

MINI = REPO / "tests" / "configs" / "mini.yaml"
NEW_TAU = 0.5  # not among mini.yaml's ablations.temperature (nor the schema's default grid)


def scheduled(result) -> dict[str, int]:
    """rule -> job count from a dry run's "Job stats" table ({} when there is nothing to do)."""
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    counts: dict[str, int] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip() == "Job stats:":
            break
    else:
        assert "Nothing to be done" in text, text[-4000:]
        return counts
    for line in lines:
        match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s+([0-9]+)\s*", line)
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
        elif line.strip().startswith("total"):
            break
    return counts


def mini_config() -> dict:
    return yaml.safe_load(MINI.read_text(encoding="utf-8"))


def with_new_temperature() -> list[float]:
    """mini.yaml's temperatures with NEW_TAU added."""
    listed = mini_config()["ablations"]["temperature"]
    assert NEW_TAU not in listed
    return [*listed, NEW_TAU]


def derived_config(tmp_path: Path, **ablations) -> Path:
    config = mini_config()
    config["ablations"] = {**config.get("ablations", {}), **ablations}
    path = tmp_path / "mini-derived.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.dag
def test_finished_run_has_every_table_and_nothing_to_do(mini_run):
    tables = mini_run / "results" / "mini" / "tables"
    for table_id in ("table1", "table2", "table3", "table4", "table5", "table6", "table7", "ablations", "seeds"):
        for ext in ("md", "csv", "tex", "html"):
            assert (tables / f"{table_id}.{ext}").stat().st_size > 0, (table_id, ext)
    assert scheduled(run_workflow(mini_run, MINI, "-n", "results/mini/tables/table5.md")) == {}


@pytest.mark.dag
def test_a_new_temperature_schedules_only_its_variant_for_table5(mini_run, tmp_path):
    config = derived_config(tmp_path, temperature=with_new_temperature())
    jobs = scheduled(run_workflow(mini_run, config, "-n", "results/mini/tables/table5.md"))
    assert not [rule for rule in jobs if "rerank" in rule], jobs
    shards = mini_config()["retrieval"]["shards"]
    seeds = len(mini_config()["ablations"]["seeds"])  # one replicate of the variant per seed
    assert seeds == 2
    assert jobs == {"distill": seeds, "encode_corpus": shards * seeds, "build_index": shards * seeds,
                    "retrieve": seeds, "evaluate": seeds, "table_table5": 1}, jobs


@pytest.mark.dag
def test_a_new_temperature_leaves_the_other_tables_alone(mini_run, tmp_path):
    config = derived_config(tmp_path, temperature=with_new_temperature())
    for table_id in ("table3", "table6", "table7"):
        jobs = scheduled(run_workflow(mini_run, config, "-n", f"results/mini/tables/{table_id}.md"))
        assert jobs == {}, (table_id, jobs)
