"""Two clean runs of the miniature DAG (tests/configs/mini.yaml) on the CPU give byte-identical
metrics.csv and tables.

The first run (fixture `mini_run`) builds both targets; the second builds the default target
`all` (every stage: data, models, encoding, index, retrieval, reranking, distillation, both
baselines, evaluation, tables) and must reproduce every file of it. The ablation variants run
the same stage code with other settings.

Everything random in the pipeline is seeded (toy benchmark, tiny models, distillation data
order, sampling and dropout, mGenQ generation), every ordering is explicit (ties, dict orders,
shard merges), and no table carries a timestamp or a path, so a rerun from scratch in another
directory reproduces the reported numbers exactly. Several minutes: `pytest -m dag`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from conftest import REPO, run_workflow

RESULTS = Path("results") / "mini"


def _reported_files(root: Path) -> list[str]:
    tables = root / "tables"
    assert tables.is_dir(), f"{tables}: no tables"
    return ["metrics.csv"] + sorted(str(p.relative_to(root)) for p in tables.rglob("*") if p.is_file())


def _diff(a: bytes, b: bytes, name: str) -> str:
    try:
        lines = difflib.unified_diff(a.decode("utf-8").splitlines(), b.decode("utf-8").splitlines(),
                                     f"first/{name}", f"second/{name}", lineterm="", n=1)
        return "\n".join(list(lines)[:40])
    except UnicodeDecodeError:
        return f"{name}: binary files of {len(a)} and {len(b)} bytes differ"


@pytest.mark.dag
def test_two_clean_runs_give_byte_identical_metrics_and_tables(mini_run, tmp_path):
    second = tmp_path / "second-run"
    done = run_workflow(second, REPO / "tests" / "configs" / "mini.yaml", "all")
    assert done.returncode == 0, done.stderr[-4000:]
    first_root, second_root = mini_run / RESULTS, second / RESULTS
    files = _reported_files(second_root)
    assert set(files) <= set(_reported_files(first_root)), "the second run reports files the first lacks"
    assert {"metrics.csv", "tables/table1.md", "tables/table3.md", "tables/table7.md"} <= set(files), files
    different = [name for name in files if (first_root / name).read_bytes() != (second_root / name).read_bytes()]
    assert not different, "\n\n".join(_diff((first_root / n).read_bytes(), (second_root / n).read_bytes(), n)
                                      for n in different)
