"""The cost model (umr/cost.py): FLOPs by hand, requests, chunking by work, the report's promises."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from umr.cost import (CostModel, Device, Shape, compute_precision, cost_data, device_from_env, load_config,
                      max_runtime_minutes, parse_dry_run)
from umr.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BERT_BASE = Shape(arch="bert", vocab=119547, d_model=768, layers=12, heads=12, d_ff=3072)


def test_encoder_flops_by_hand():
    # per layer: Q, K, V, O (4 x 768^2) + FFN (2 x 768 x 3072) weights, 2 FLOPs each
    weights = 4 * 768 * 768 + 2 * 768 * 3072  # 7,077,888
    assert BERT_BASE.encoder_flops(0) == 12 * 2 * weights
    # attention: scores and values, 2 x 2 x context x width per layer
    assert BERT_BASE.encoder_flops(256) == 12 * (2 * weights + 4 * 256 * 768)


def test_decoder_flops_include_cross_attention_and_the_lm_head():
    t5 = Shape(arch="t5", vocab=100, d_model=8, layers=1, heads=2, d_kv=4, d_ff=16)
    weights = 8 * 8 * 8 + 3 * 8 * 16  # self + cross attention (8 d x width), gated FFN (3 d x d_ff)
    assert t5.decoder_flops(3, 5) == 2 * weights + 4 * (3 + 5) * 8 + 2 * 8 * 100


@pytest.mark.parametrize("hub, published", [("chaoweihuang/mt5-xl-lm-adapt", 3.7e9), ("facebook/mcontriever", 1.78e8)])
def test_hub_shapes_have_the_published_sizes(hub, published):
    shape = Shape(**cost_data()["models"][hub])
    assert abs(shape.parameters / published - 1) < 0.03, shape.parameters


@pytest.mark.parametrize("value, minutes", [("", 1440), ("90", 90), ("36h", 2160), ("2d", 2880),
                                            ("1-12:00:00", 2160), ("08:30", 510)])
def test_site_cap(monkeypatch, value, minutes):
    monkeypatch.setenv("UMR_SLURM_MAX_RUNTIME", value)
    assert max_runtime_minutes() == minutes


def test_site_cap_bad_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("UMR_SLURM_MAX_RUNTIME", "a day")
    with pytest.raises(ConfigError, match="UMR_SLURM_MAX_RUNTIME='a day'"):
        max_runtime_minutes()


@pytest.mark.parametrize("model, gpus, device", [("a100", 1, "a100"), ("a100_80gb", 1, "a100"), ("H100", 1, "h100"),
                                                 ("v100", 1, "v100"), ("", 1, "a100"), ("l40s", 1, "a100"),
                                                 ("a100", 0, "cpu"), ("cpu", 1, "cpu")])
def test_device_of_the_runtime_estimates(monkeypatch, model, gpus, device):
    monkeypatch.setenv("UMR_SLURM_GPU_MODEL", model)
    assert device_from_env(gpus).name == device


def test_unknown_device_is_one_line():
    with pytest.raises(ConfigError, match="unknown device 'tpu'.*a100"):
        Device.named("tpu")


@pytest.mark.parametrize("setting, device, lm, expected", [
    ("auto", "cpu", False, "fp32"), ("auto", "a100", False, "bf16"), ("auto", "v100", False, "fp16"),
    ("auto", "v100", True, "fp32"), ("auto", "h100", True, "bf16"), ("bf16", "cpu", True, "bf16"),
    ("fp32", "a100", False, "fp32")])
def test_precision_the_estimates_assume(setting, device, lm, expected):
    assert compute_precision(setting, Device.named(device), lm=lm) == expected


def test_half_precision_is_faster_on_gpus():
    a100 = Device.named("a100")
    assert a100.flops_per_s("bf16") == 312e12 * 0.4 and a100.flops_per_s("fp32") == 156e12 * 0.4
    cpu = Device.named("cpu")
    assert cpu.flops_per_s("fp32", parallel=8) == 8 * cpu.flops_per_s("fp32")


def test_rerank_chunks_follow_the_work():
    paper = load_config([str(REPO / "config.paper.yaml")])
    cost = CostModel(paper, Device.named("a100"))
    # XOR-Full train: 61,360 / 7 = 8,766 questions x 100 = 876,600 pairs -> 2 chunks of <= 500,000
    assert cost.rerank_chunks("xor_full", "train", 100) == 2
    assert cost.rerank_chunks("xor_retrieve", "train", 100) == 1  # 2,179 x 100
    assert cost.rerank_chunks("xor_full", "dev", 100) == 1
    paper["umr"]["rerank"]["chunk_pairs"] = 100_000
    assert cost.rerank_chunks("xor_full", "train", 100) == 9  # ceil(876,600 / 100,000)
    paper["umr"]["rerank"]["chunks"] = 3
    assert cost.rerank_chunks("xor_full", "dev", 100) == 3
    toy = load_config([])
    assert CostModel(toy).rerank_chunks("xor_retrieve", "train", 10) == 1


def test_runtime_request_has_a_floor_and_a_safety_factor(monkeypatch):
    monkeypatch.delenv("UMR_SLURM_MAX_RUNTIME", raising=False)
    cost = CostModel(load_config([str(REPO / "config.paper.yaml")]), Device.named("a100"))
    estimate = cost.estimate("rerank", {"task": "xor_full", "split": "train", "lang": "ar", "chunk": "0",
                                        "chunks": "2", "rtag": "rr-mt5-xl_official_mean_k100"})
    assert estimate.gpus == 1 and "438,300 pairs" == estimate.work  # ceil(8,766 / 2) x 100
    assert cost.runtime_request(estimate) == max(10, -(-estimate.seconds * 1.5 // 60))
    tiny = cost.estimate("evaluate", {"task": "xor_retrieve", "split": "dev", "enode": "mcontriever"})
    assert cost.runtime_request(tiny) == 10


def test_toy_sizes_are_counted_from_the_generator():
    cost = CostModel(load_config([]))
    assert cost.device.name == "cpu"  # the toy has no GPUs
    assert cost.sizes.questions["xor_retrieve"] == {"train": 350, "dev": 350}  # 50 per language x 7
    assert 2000 < cost.sizes.passages["xor_retrieve"] < cost.sizes.passages["xor_full"]


def test_parse_dry_run_blocks():
    text = ("[Sun Dec  6 18:00:00 2026]\nrule rerank:\n    input: a.trec\n    output: b.trec\n    jobid: 7\n"
            "    wildcards: dataset=xor, task=xor_full, split=dev\n    threads: 8\n"
            "    resources: tmpdir=/tmp, gpu=1, mem_mb=23000, runtime=10\n\n"
            "[Sun Dec  6 18:00:00 2026]\nlocalrule metrics:\n    input: x\n    jobid: 8\n\n")
    jobs = parse_dry_run(text)
    assert [(j.rule, j.local) for j in jobs] == [("rerank", False), ("metrics", True)]
    assert jobs[0].wildcards == {"dataset": "xor", "task": "xor_full", "split": "dev"}
    assert jobs[0].resources["runtime"] == "10" and jobs[0].resources["gpu"] == "1"


@pytest.fixture(scope="module")
def paper_report() -> dict:
    # both targets: the whole paper run (the method, its baselines and the grids of Tables 4-6)
    done = subprocess.run([sys.executable, "-m", "umr.cost", "--configfile", "config.paper.yaml", "--gpu", "a100",
                           "--targets", "all", "ablations", "--json"], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_paper_run_fits_a_cluster(paper_report):
    """The issue's budget: <= 300 GPU-hours on A100s, no job over 24 h or over its request,
    attempt-1 reservations <= 2x the estimate."""
    r = paper_report
    assert r["device"] == "a100" and r["jobs"] > 500
    assert r["total_gpu_hours"] <= 300, r["total_gpu_hours"]
    assert r["max_job_hours"] <= 24 and r["jobs_over_request"] == 0 and r["jobs_over_cap"] == 0
    assert r["attempt1_requested_gpu_hours"] <= 2 * r["total_gpu_hours"]
    assert set(r["disk_gb_by_iteration"]) == {"0", "1", "2"}
    # every rule of the DAG is estimated; the encode outputs are temporary (the index keeps the vectors)
    assert {"encode_corpus", "rerank", "distill", "retrieve", "build_index", "evaluate"} <= set(r["rules"])
    assert r["rules"]["encode_corpus"]["disk_gb"] == 0 and r["rules"]["build_index"]["disk_gb"] > 1000


def test_report_bad_device_is_one_line():
    done = subprocess.run([sys.executable, "-m", "umr.cost", "--gpu", "tpu"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().startswith("error: unknown device 'tpu'"), done.stderr


def test_calibration_counts_only_the_pairs_a_rerank_job_scored(tmp_path):
    """A rerank job whose log says it took 3 of 4 pairs from the score cache is predicted start-up plus a
    quarter of the full estimate's work; a job without that line, the full estimate."""
    from umr.cost import calibration

    config = load_config([])
    node = tmp_path / "xor_retrieve" / "mcontriever" / "rr-mt5_official_mean_k10"
    for name, log in (("rerank.dev.fi.chunk-0-of-1", "umr: 125 pairs to score, 375 reused from earlier reranking\n"),
                      ("rerank.dev.ja.chunk-0-of-1", None)):
        (node / "benchmarks").mkdir(parents=True, exist_ok=True)
        (node / "benchmarks" / f"{name}.tsv").write_text("s\th:m:s\n10.0\t0:00:10\n")
        if log:
            (node / "logs").mkdir(exist_ok=True)
            (node / "logs" / f"{name}.log").write_text(log)
    model = CostModel(config, Device.named("cpu"))
    wc = {"task": "xor_retrieve", "rtag": "rr-mt5_official_mean_k10", "split": "dev", "chunk": "0", "chunks": "1"}
    full, startup = model.estimate("rerank", wc).seconds, model.cpu.startup_s
    row = calibration(tmp_path, config)["rerank"]
    assert row["jobs"] == 2 and row["measured_s"] == 20.0
    assert row["predicted_s"] == pytest.approx(full + startup + (full - startup) / 4)


def test_a_job_for_every_language_is_estimated_and_calibrated_as_their_sum(tmp_path):
    """umr.rerank.group_languages: one job's pairs are every language's, its start-up is paid once,
    and its benchmark file (rerank.<split>.all-languages) is calibrated with its log's count lines summed."""
    from umr.cost import calibration

    config = load_config([])
    assert config["umr"]["rerank"]["group_languages"]  # the toy's setting
    model = CostModel(config, Device.named("cpu"))
    rtag = "rr-mt5_official_mean_k10"
    one = {"task": "xor_retrieve", "rtag": rtag, "split": "dev", "lang": "ja", "chunk": "0", "chunks": "1"}
    grouped = {"task": "xor_retrieve", "rtag": rtag, "split": "dev"}
    n = len(config["languages"])
    per_language = model.estimate("rerank", one)
    every = model.estimate("rerank", grouped)
    assert every.work == f"{int(per_language.work.split()[0].replace(',', '')) * n:,} pairs"
    assert every.seconds < n * per_language.seconds  # one start-up, not n
    node = tmp_path / "xor_retrieve" / "mcontriever" / rtag
    (node / "benchmarks").mkdir(parents=True)
    (node / "logs").mkdir()
    (node / "benchmarks" / "rerank.dev.all-languages.tsv").write_text("s\th:m:s\n10.0\t0:00:10\n")
    (node / "logs" / "rerank.dev.all-languages.log").write_text(
        "umr: 100 pairs to score, 0 reused from earlier reranking\n"
        "umr: 0 pairs to score, 300 reused from earlier reranking\n")
    row = calibration(tmp_path, config)["rerank"]
    startup = model.cpu.startup_s
    assert row["jobs"] == 1 and row["measured_s"] == 10.0
    assert row["predicted_s"] == pytest.approx(startup + (every.seconds - startup) / 4)
