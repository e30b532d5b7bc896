"""The rehearsal of the paper run (`make rehearsal`) through the repository's SLURM profile.

config.paper.yaml + config.rehearsal.yaml (sizes only) on a single-node SLURM cluster, data
downloaded over HTTP from files in the published formats, models fetched from a hub-layout
cache holding checkpoints in the real formats (`vocab.txt` BERT, `spiece.model` mT5/mT0,
`pytorch_model.bin`). Asserts what a cluster user's first run depends on: every rule of the
paper DAG ran, the tokenizers the real files imply were loaded (no `tokenizer.json` anywhere),
reranking ran in bf16, and metrics.csv fills every row of Tables 1, 3 and 7.

About 20-30 minutes here; runs in CI (it replaces the miniature toy DAG on SLURM, which it
covers). `UMR_TEST_SKIP_REHEARSAL=1` leaves it out of a local run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from umr.cost import CostModel
from umr.rehearsal import run as rehearsal
from umr.tables import build_table, read_metrics, table_spec

REPO = Path(__file__).resolve().parents[1]
# What `snakemake --profile slurm` builds. `make rehearsal` adds the grids (target `ablations`):
# the same rules with other settings, whose tables run on the login node, so CI leaves them to
# the miniature DAG (tests/test_table_targets.py) and saves their ~30 jobs through SLURM.
TARGETS = ("all",)


@pytest.fixture(scope="module")
def rehearsed(slurm_cluster, tmp_path_factory):
    if os.environ.get("UMR_TEST_SKIP_REHEARSAL") == "1":
        pytest.skip("UMR_TEST_SKIP_REHEARSAL=1")
    workdir = tmp_path_factory.mktemp("rehearsal")
    cmd = [sys.executable, "-m", "umr.rehearsal", "--workdir", str(workdir), "--", *TARGETS]
    proc = subprocess.run(cmd, cwd=REPO, env=slurm_cluster.env, capture_output=True, text=True, timeout=3600)
    print(proc.stdout[-3000:])
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    config = rehearsal.load_config(rehearsal.PAPER_CONFIG, rehearsal.OVERRIDE_CONFIG)
    return workdir, workdir / "results" / config["dataset"], config


def job_logs(results: Path, rule: str) -> list[Path]:
    """The logs of a rule's jobs: each node keeps its own in <node>/logs/."""
    return sorted(results.rglob(f"logs/{rule}.*log"))


def paper_rules() -> set[str]:
    """Rules of the paper DAG (TARGETS): a dry run of config.paper.yaml through the site profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UMR_SLURM_", "SBATCH_", "SLURM_"))}
    env["UMR_SLURM_SKIP_SITE_CHECK"] = "1"
    proc = subprocess.run([sys.executable, "-m", "snakemake", *TARGETS, "--profile", "slurm", "-n",
                           "--quiet", "rules"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = (proc.stdout + proc.stderr).split("Job stats:")[-1]
    return {rule for rule, _ in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)} - {"total"}


@pytest.mark.slurm
@pytest.mark.dag
def test_every_rule_of_the_paper_dag_ran_through_slurm(rehearsed):
    workdir, results, _ = rehearsed
    summary = json.loads((results / "rehearsal.json").read_text())
    assert summary["mode"] == "slurm" and summary["exit_status"] == 0
    missing = paper_rules() - set(summary["jobs_per_rule"])
    assert not missing, f"rules of the paper DAG that never ran in the rehearsal: {sorted(missing)}"
    log = (workdir / summary["snakemake_log"]).read_text()
    submitted = set(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_(\w+)/", log))
    assert {"encode_corpus", "rerank", "distill", "generate_questions", "train_mgenq"} <= submitted, sorted(submitted)
    print(f"rehearsal: {summary['jobs']} jobs in {summary['wall_seconds']:.0f} s: {summary['jobs_per_rule']}")


@pytest.mark.slurm
@pytest.mark.dag
def test_real_checkpoint_formats_were_loaded(rehearsed):
    """The tokenizers the hub files imply, and no tokenizer.json in the cache or the fetched models."""
    workdir, results, config = rehearsed
    for root in (results / "sources" / "hub", results / "models" / "hub"):
        assert root.is_dir(), root
        assert not list(root.rglob("tokenizer.json")), f"a tokenizer.json under {root}"
    fetched = {name: json.loads((results / "models" / "hub" / name / "UMR_SOURCE.json").read_text())
               for name in config["models"]}
    assert all(source["source"].startswith("hub-cache:") for source in fetched.values()), fetched
    encode, rerank, genq = ("\n".join(p.read_text() for p in job_logs(results, rule))
                            for rule in ("encode_corpus", "rerank", "generate_questions"))
    assert re.search(r"tokenizer \w+ from vocab\.txt", encode), encode[-2000:]
    assert re.search(r"model \w+ \S+ from pytorch_model\.bin", encode), encode[-2000:]
    assert re.search(r"tokenizer \w+ from spiece\.model", rerank), rerank[-2000:]
    assert re.search(r"tokenizer \w+ from spiece\.model", genq), genq[-2000:]


@pytest.mark.slurm
@pytest.mark.dag
def test_reranking_ran_in_bf16(rehearsed):
    _, results, config = rehearsed
    logs = job_logs(results, "rerank")
    # chunks: auto (the paper's): each language and split has as many chunks as its pairs need
    # (umr.cost: XOR-Full train 2, the rest 1)
    cost, top_k = CostModel(config), config["umr"]["rerank"]["top_k"]
    groups: dict[tuple, set] = {}
    for path in logs:
        m = re.fullmatch(r"rerank\.(\w+)\.(\w+)\.chunk-(\d+)-of-(\d+)\.log", path.name)
        task = path.relative_to(results).parts[0]
        groups.setdefault((path.parent, m.group(1), m.group(2)), set()).add((int(m.group(3)), int(m.group(4))))
        assert int(m.group(4)) == cost.rerank_chunks(task, m.group(1), top_k), path
    from umr.plan import last_rerank_tasks

    # per task: the training questions at iterations 0..I-1, the dev split's initial (+ last iteration) + rerank
    nodes = sum(config["umr"]["iterations"] + 1 + (task in last_rerank_tasks(config)) for task in config["umr"]["tasks"])
    assert len(groups) == len(config["languages"]) * nodes, sorted(groups)
    assert all(chunks == {(c, n) for c in range(n)} for chunks in groups.values() for _, n in chunks)
    assert max(n for chunks in groups.values() for _, n in chunks) > 1  # the chunk-and-merge path ran
    for path in logs:
        text = path.read_text()
        assert "bfloat16" in text and "float32 from" not in text, (path, text[-1500:])


@pytest.mark.slurm
@pytest.mark.dag
def test_distillation_ran_the_official_recipe(rehearsed):
    """config.paper.yaml's official behaviours reached the trainer: 1/8 gradients, "?" stripped, fp16 with a
    loss scale, the epoch with the best validation rank kept (docs/deviations.md rows 1-4)."""
    _, results, _ = rehearsed
    retrievers = sorted(results.glob("*/mcontriever/**/kd-*/retriever"))
    assert retrievers, "no distilled retriever"
    for retriever in retrievers:
        meta = json.loads((retriever / "distill_settings.json").read_text())
        assert (meta["grad_scale"], meta["strip_question_mark"], meta["keep"], meta["precision"]) == \
            (0.125, True, "best_val_rank", "fp16"), (retriever, meta)
        assert len(meta["validation_average_rank"]) == meta["epochs"] and 1 <= meta["kept_epoch"] <= meta["epochs"]


@pytest.mark.slurm
@pytest.mark.dag
@pytest.mark.parametrize("table_id", ["table1", "table3", "table7"])
def test_metrics_fill_every_row_of_the_paper_tables(rehearsed, table_id):
    _, results, config = rehearsed
    # paper=False: one row per spec row, every cell ours (the paper's numbers are not in metrics.csv)
    spec = dataclasses.replace(table_spec(config, table_id), paper=False)
    table = build_table(spec, read_metrics(results / "metrics.csv"))
    ours = [row for row, spec_row in zip(table.rows, spec.rows, strict=True) if not spec_row.reported]
    assert ours, table_id
    empty = [row[0] for row in ours if any(cell is None for cell in row[1:])]
    assert not empty, f"{table_id}: rows without scores in metrics.csv: {empty}"
    assert (results / "tables" / f"{table_id}.md").exists()



# -- without a cluster ------------------------------------------------------------------------
def test_a_cluster_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    """`make rehearsal` where SLURM cannot start says why and what to run instead, in one line."""
    if os.geteuid() != 0:
        pytest.skip("cluster.sh re-runs itself with sudo as a normal user")
    foreign = tmp_path / "not-a-cluster"
    foreign.mkdir()
    monkeypatch.setenv("UMR_SLURM_DIR", str(foreign))  # exists, not made by cluster.sh: start refuses
    with pytest.raises(rehearsal.UMRError) as err:
        rehearsal.start_cluster()
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot start a local SLURM cluster (")
    assert "was not made by cluster.sh" in message and "make rehearsal LOCAL=1" in message
    assert list(foreign.iterdir()) == []


def test_sources_config_is_stable_so_a_rerun_redoes_nothing(tmp_path):
    """The URLs and the cache path are rule parameters: the same run writes the same file."""
    path = tmp_path / "sources.yaml"
    rehearsal.write_sources_config(path, "http://127.0.0.1:47831", tmp_path / "hub")
    before = (path.read_text(), path.stat().st_mtime_ns)
    rehearsal.write_sources_config(path, "http://127.0.0.1:47831", tmp_path / "hub")
    assert (path.read_text(), path.stat().st_mtime_ns) == before
    config = rehearsal.load_config(rehearsal.PAPER_CONFIG, rehearsal.OVERRIDE_CONFIG, path)
    assert config["data"]["urls"]["corpus/xor_full.tsv"] == "http://127.0.0.1:47831/all_w100.tsv"
    assert config["hub_cache"] == str((tmp_path / "hub").resolve())


def test_override_changes_only_sizes():
    """config.rehearsal.yaml may change sizes, never the method: listed keys only."""
    import yaml

    override = yaml.safe_load(rehearsal.OVERRIDE_CONFIG.read_text())

    def leaves(d, prefix=""):
        for key, value in d.items():
            if isinstance(value, dict) and key != "questions":
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    # The precision keys only say what the paper's `auto` means on a GPU (bf16), which `auto` on a CPU is not.
    allowed = {"dataset", "retrieval.shards", "retrieval.precision", "retrieval.gpu_search", "resources.threads",
               "umr.rerank.dtype", "umr.distill.epochs", "umr.distill.warmup_steps", "umr.distill.checkpoint_every",
               "umr.distill.validation.questions", "baselines.mgenq.sampling.max_new_tokens", "baselines.mgenq.sampling.dtype",
               "baselines.mgenq.train.epochs", "baselines.mgenq.train.warmup_steps",
               "baselines.mgenq.train.batch_size", "baselines.mgenq.train.precision",
               # the grids' sizes: one value per knob beside the default
               "ablations.temperature", "ablations.batch_size", "ablations.in_batch_negatives"}
    changed = {key for key in leaves(override) if not key.startswith("toy.")}
    assert changed <= allowed, sorted(changed - allowed)


def test_jobs_per_rule_reads_snakemake_log():
    log = ("[Sun Dec  6 15:00:00 2026]\nrule rerank:\n    input: a\n\n"
           "[Sun Dec  6 15:00:01 2026]\nlocalrule metrics:\n\n"
           "[Sun Dec  6 15:00:02 2026]\nrule rerank:\n    wildcards: x\n\nrule all:\n")
    assert rehearsal.jobs_per_rule(log) == {"metrics": 1, "rerank": 2}
