"""Dry run of the paper configuration through the SLURM site profile (nothing runs, nothing is downloaded).

`snakemake --profile slurm -n` from the repository root must plan the paper's run
(config.paper.yaml: XOR-TyDi QA, mContriever, mT5-XL, two iterations). The number of
jobs of every rule is derived here from the configuration's values (shards, iterations,
languages, chunks, ablation grids, baselines), not copied from a run, so a change to the
DAG that does not follow from the configuration shows up as a wrong count.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from umr.config import validate_config
from umr.cost import CostModel, Device

REPO = Path(__file__).resolve().parents[1]
# retrieve: the paper config searches on the GPU (retrieval.gpu_search)
GPU_RULES = ("encode_corpus", "rerank", "distill", "generate_questions", "train_mgenq", "retrieve")
SITE = {"UMR_SLURM_ACCOUNT": "proj-umr", "UMR_SLURM_PARTITION": "cpu-part",
        "UMR_SLURM_GPU_PARTITION": "gpu-part", "UMR_SLURM_GPU_MODEL": "a100"}


@pytest.fixture(scope="module")
def paper_config() -> dict:
    with open(REPO / "config.paper.yaml", encoding="utf-8") as f:
        return validate_config(copy.deepcopy(yaml.safe_load(f)))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory) -> dict:
    """Jobs of `snakemake all ablations --profile slurm -n` in an empty directory: rule -> [job blocks]."""
    workdir = tmp_path_factory.mktemp("paper-dry")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UMR_SLURM_", "SBATCH_", "SLURM_"))}
    # no cluster to ask here (and a site check must not depend on the machine the tests run on)
    env.update(SITE, UMR_SLURM_SKIP_SITE_CHECK="1", PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                                             env.get("PATH", "")]))
    # --cores: a dry run otherwise plans with one core and shows every job's threads as 1
    cmd = [sys.executable, "-m", "snakemake", "all", "ablations", "--profile", "slurm", "-n", "--cores", "1024",
           "--directory", str(workdir)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    jobs: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(local)?rule (\w+):\n(.*?)(?:\n\n|\Z)", block, re.S | re.M)
        if not m:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(3), re.M))
        shell = re.search(r"^Shell command: (.*)$", block, re.M)
        fields["shell"] = shell.group(1) if shell else ""
        jobs.setdefault(m.group(2), []).append(fields)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", out.split("Job stats:")[-1], re.M))
    assert not (workdir / "results").exists(), "a dry run must not create results (or download anything)"
    return {"jobs": jobs, "stats": {k: int(v) for k, v in stats.items() if k != "total"}, "output": out}


def expected_counts(cfg: dict) -> Counter:
    """Jobs per rule that the paper configuration implies, by arithmetic on its values."""
    from umr.plots import default_plots
    from umr.tables import TABLES

    tasks, langs = cfg["umr"]["tasks"], cfg["languages"]
    n_lang, iters = len(langs), cfg["umr"]["iterations"]
    shards, cost = cfg["retrieval"]["shards"], CostModel(cfg)
    evals = len(cfg["eval_splits"])
    assert iters >= 1
    # Ablations (paper Tables 4-6): one distillation knob at a time around the defaults, each
    # value distilled from the initial retriever and scored on the ablation task.
    ab = cfg["ablations"]
    assert ab["mode"] == "one_at_a_time", "the arithmetic below covers the paper's one-at-a-time grids"
    assert not ab["rerank_top_k"] and not ab["reranker"] and set(ab["iterations"]) <= {iters}, \
        "reranking / iteration grids: extend the arithmetic"
    assert set(ab["seeds"]) <= {cfg["umr"]["distill"]["seed"]}, "seed replicates: extend the arithmetic"
    distill_defaults = {"temperature": cfg["umr"]["distill"]["temperature"],
                        "batch_size": cfg["umr"]["distill"]["batch_size"],
                        "in_batch_negatives": cfg["umr"]["distill"]["in_batch_negatives"],
                        "passages_per_question": cfg["umr"]["distill"]["passages_per_question"]}
    variants = sum(1 for knob, default in distill_defaults.items() for value in ab[knob]
                   if value != default
                   and not (knob == "passages_per_question" and value > cfg["umr"]["rerank"]["top_k"]))
    negated = int(cfg["umr"]["control_negated_teacher"])
    from umr.plan import bm25_tasks, last_rerank_tasks, mgenq_tasks

    c: Counter = Counter()
    for task in tasks:
        bm25, mgenq = int(task in bm25_tasks(cfg)), int(task in mgenq_tasks(cfg))
        reranked_rows = 1 + int(task in last_rerank_tasks(cfg))  # initial (+ last iteration) + rerank
        extra = variants if task == ab["task"] else 0
        # retrievers with an index: iterations 0..I of the chain, the controls, mGenQ, ablations
        retrievers = (iters + 1) + negated + mgenq + extra
        c["encode_corpus"] += shards * retrievers
        c["build_index"] += shards * retrievers
        # training-question runs of iterations 0..I-1 (they are reranked and distilled), and
        # every retriever's run on each evaluated split
        c["retrieve"] += iters + retrievers * evals
        # per language and chunk: the training questions of iterations 0..I-1, and the
        # evaluated reranking rows (initial retriever + rerank, last iteration + rerank);
        # chunks per language and split: umr.rerank.chunks, or (auto) as many as the pairs need
        top_k = cfg["umr"]["rerank"]["top_k"]
        c["rerank"] += n_lang * (iters * cost.rerank_chunks(task, "train", top_k)
                                 + reranked_rows * sum(cost.rerank_chunks(task, split, top_k)
                                                       for split in cfg["eval_splits"]))
        c["distill"] += iters + negated + extra
        c["evaluate"] += evals * (retrievers + reranked_rows + bm25)
        c["generate_questions"] += mgenq
        c["train_mgenq"] += mgenq
        c["corpus_offsets"] += 1
        c["download_corpus"] += 1
        c["download_questions"] += len({"train", *cfg["eval_splits"]})
        if bm25:
            c["bm25_search"] += n_lang * evals
            # XOR-Retrieve: one English collection; XOR-Full: each question language's own
            c["bm25_index"] += 1 if task == "xor_retrieve" else n_lang
            c["bm25_split_collection"] += int(task == "xor_full")
    hub = {cfg["umr"]["retriever"], cfg["umr"]["rerank"]["reranker"]}
    if mgenq_tasks(cfg):
        hub.add(cfg["baselines"]["mgenq"]["generator"] or cfg["umr"]["rerank"]["reranker"])
    c["fetch_model"] = len(hub)
    c["metrics"] = c["all"] = c["ablations"] = 1
    c["metrics_ablations"] = int(variants > 0)
    for table in TABLES:  # the seeds table only with several seeds
        c[f"table_{table}"] = int(table != "seeds")
    for plot in default_plots(cfg):
        c[f"plot_{plot}"] = 1
    return +c


def test_profile_runs_the_paper_configuration(dry_run, paper_config):
    """`--profile slurm` selects config.paper.yaml: the hub models and the XOR-TyDi files."""
    assert paper_config["benchmark"] == "xor-tydi" and paper_config["umr"]["iterations"] == 2
    fetch = {job["wildcards"] for job in dry_run["jobs"]["fetch_model"]}
    assert "dataset=xor, name=mcontriever" in fetch and "dataset=xor, name=mt5-xl" in fetch, fetch
    shells = " ".join(job["shell"] for job in dry_run["jobs"]["fetch_model"])
    assert "--repo-id facebook/mcontriever" in shells and "--repo-id chaoweihuang/mt5-xl-lm-adapt" in shells
    urls = " ".join(job["shell"] for rule in ("download_corpus", "download_questions") for job in dry_run["jobs"][rule])
    assert "enwiki_20190201_w100.tsv" in urls and "cora/models/all_w100.tsv" in urls
    assert "xor_train_retrieve_eng_span.jsonl" in urls and "xor_dev_full_v1_1.jsonl" in urls
    # Table 8 and the official script, as the distillation jobs receive them
    main = [j["shell"] for j in dry_run["jobs"]["distill"] if "--temperature=0.1 --batch-size=16 " in j["shell"]]
    assert main, "no distillation with the paper's settings"
    for option in ("--passages-per-question=16", "--epochs=10", "--learning-rate=2e-05", "--warmup-steps=1237",
                   "--max-grad-norm=2.0", "--seed=12345", "--max-length 256", "--grad-cache"):
        assert option in main[0], (option, main[0])
    # the official trainer's behaviours (docs/deviations.md), as config.paper.yaml selects them
    for option in ("--grad-scale=0.125", "--strip-question-mark", "--keep=best_val_rank", "--val-questions=1000",
                   "--val-hard-negatives=30", "--precision fp16"):
        assert option in main[0], (option, main[0])
    hits = {j["wildcards"].split("task=")[1].split(",")[0]: "--hit dpr_has_answer" in j["shell"]
            for j in dry_run["jobs"]["evaluate"]}
    assert hits == {"xor_retrieve": False, "xor_full": True}, hits
    rerank = dry_run["jobs"]["rerank"][0]["shell"]
    assert "--top-k 100" in rerank and "--template official" in rerank and "--aggregation mean" in rerank


def test_job_counts_follow_from_the_configuration(dry_run, paper_config):
    expected = expected_counts(paper_config)
    got = Counter(dry_run["stats"])
    assert got == expected, {rule: (got[rule], expected[rule]) for rule in got | expected if got[rule] != expected[rule]}
    # the parsed job blocks agree with Snakemake's own table
    assert {rule: len(blocks) for rule, blocks in dry_run["jobs"].items()} == dict(got)


def test_gpu_rules_ask_for_gpus_memory_time_and_cpus(dry_run, paper_config):
    threads, gpus = paper_config["resources"]["threads"], paper_config["resources"]["gpu"]
    cost = CostModel(paper_config, Device.named("a100"))
    assert gpus >= 1
    seen = set()
    for rule in GPU_RULES:
        for job in dry_run["jobs"].get(rule, []):
            seen.add(rule)
            res = job["resources"]
            assert f"gpu={gpus}" in res and "gpu_model=a100" in res, (rule, res)
            assert "slurm_partition=gpu-part" in res and "slurm_account=proj-umr" in res, (rule, res)
            # models and optimiser states need >= 8 GB; retrieve holds one Flat shard (3.5-8.4 GB)
            assert int(re.search(r"\bmem_mb=(\d+)", res).group(1)) >= (6000 if rule == "retrieve" else 8000), res
            # the runtime request is the cost model's, for the site's GPU (a100 here)
            wildcards = dict(kv.split("=", 1) for kv in job["wildcards"].split(", "))
            runtime = int(re.search(r"\bruntime=(\d+)", res).group(1))
            assert runtime == cost.runtime_request(cost.estimate(rule, wildcards)), (rule, res)
            assert 10 <= runtime <= 24 * 60, (rule, res)
            assert f"--threads {threads}" in job["shell"], (rule, job["shell"])  # sbatch --cpus-per-task
            assert "--gres" not in res and "--gpus" not in res, (rule, res)
    assert {"encode_corpus", "rerank", "distill", "retrieve"} <= seen


def test_cpu_rules_get_the_cpu_partition_and_no_gpu(dry_run):
    for rule in ("build_index", "evaluate", "corpus_offsets", "bm25_index"):
        for job in dry_run["jobs"][rule]:
            assert "gpu=" not in job["resources"] and "slurm_partition=cpu-part" in job["resources"], (rule, job)
    # a Flat shard of XOR-Full (44 M / 16 x 768 x 4 B = 8.4 GB) fits the index job's memory
    for job in dry_run["jobs"]["build_index"]:
        if "task=xor_full" in job["wildcards"]:
            assert int(re.search(r"\bmem_mb=(\d+)", job["resources"]).group(1)) >= 44e6 / 16 * 768 * 4 / 1e6


def local_rules(configfile: Path, tmp_path: Path) -> set[str]:
    """Rules that run where Snakemake runs (`localrules:`), as the loaded workflow declares them.

    A dry run executes nothing and marks no job local, so the workflow is loaded through a
    two-line Snakefile that includes the real one and prints the declared set.
    """
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(f"include: {str(REPO / 'Snakefile')!r}\n"
                       "print('LOCALRULES=' + ','.join(sorted(workflow._localrules)))\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(wrapper), "--configfile", str(configfile),
                           "--directory", str(tmp_path), "--list-rules"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return set(re.search(r"^LOCALRULES=(.*)$", proc.stdout, re.M).group(1).split(","))


def test_downloads_and_model_fetches_run_locally(dry_run, tmp_path):
    """Compute nodes may have no internet: downloads run where Snakemake runs; the heavy rules do not."""
    local = local_rules(REPO / "config.paper.yaml", tmp_path)
    assert {"download_questions", "download_corpus", "fetch_model"} <= local, local
    assert not local & {*GPU_RULES, "build_index", "retrieve", "corpus_offsets", "evaluate", "bm25_index",
                        "bm25_split_collection"}, local
    fetch = dry_run["jobs"]["fetch_model"][0]["shell"]
    assert "python -m umr.download model" in fetch and "--out results/xor/models/hub/" in fetch
    for job in dry_run["jobs"]["download_corpus"]:
        assert "--manifest results/xor/data/MANIFEST.json" in job["shell"] and "--key corpus/" in job["shell"]


def test_runtime_grows_with_attempts_up_to_the_site_cap(paper_config, monkeypatch):
    """A job killed at its time limit is retried with twice the time, never more than the site allows
    (UMR_SLURM_MAX_RUNTIME); it resumes from its checkpoint instead (rules/common.smk, umr/cost.py)."""
    from umr.plan import default_distill, default_rerank

    cost = CostModel(paper_config, Device.named("v100"))
    wildcards = {"task": "xor_full", "rtag": default_rerank(paper_config).tag, "dtag": default_distill(paper_config).tag}
    estimate = cost.estimate("distill", wildcards)
    monkeypatch.setenv("UMR_SLURM_MAX_RUNTIME", "12h")
    first = cost.runtime_request(estimate, 1)
    assert first >= estimate.seconds * paper_config["resources"]["runtime_safety"] / 60 - 1
    assert [cost.runtime_request(estimate, a) for a in (1, 2, 3, 4)] == [min(first * 2 ** k, 720) for k in range(4)]
    assert cost.runtime_request(estimate, 4) == 720
    monkeypatch.setenv("UMR_SLURM_MAX_RUNTIME", "1-00:00:00")
    assert cost.runtime_request(estimate, 9) == 24 * 60
    profile = yaml.safe_load((REPO / "slurm" / "config.yaml").read_text())
    assert profile["retries"] >= 1 and profile["show-failed-logs"] is True
    assert "slurm_extra" not in str(profile.get("default-resources", {}))
