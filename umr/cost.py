"""Cost model: the work of every job of a configuration, its time on a device, what it asks for.

Used twice, with the same numbers:
- by the rules (rules/common.smk): each job's runtime request is its estimate x a safety
  factor, capped at the site's maximum (`UMR_SLURM_MAX_RUNTIME`), and `umr.rerank.chunks:
  auto` splits a language's reranking into chunks by its number of pairs;
- by `python -m umr.cost`, the report a user reads before submitting anything:

    python -m umr.cost --configfile config.paper.yaml --gpu a100 [--targets all ablations] [--json]

  It lists the jobs of the configuration's DAG (a Snakemake dry run), per rule the work
  (FLOPs, passages, pairs, steps), estimated hours, the runtime each job requests, the disk
  its outputs take, and flags every job whose estimate exceeds its request or the site cap.

Every estimate is  seconds = start-up + work / throughput  (umr/resources/cost.yaml holds
the devices, the models' shapes and the benchmark's sizes). FLOPs per token of a transformer
forward pass: 2 x its non-embedding weights + 4 x layers x context x attention width
(scores and values); a training step is 3 forward passes (forward + backward), 4 with the
gradient cache (its extra no-grad forward).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from umr.errors import ConfigError, UMRError
from umr.io import log, run_cli
from umr.lineage import ContrastiveSpec, DistillSpec, GenQSpec, RerankSpec
from umr.plan import mgenq_count_task

DATA_FILE = Path(__file__).with_name("resources") / "cost.yaml"
GPU_RULES = ("encode_corpus", "rerank", "distill", "generate_questions", "train_mgenq")
DEFAULT_DEVICE = "a100"
DEFAULT_MAX_RUNTIME_MIN = 24 * 60
MIN_REQUEST_MIN = 10  # below this a request saves nothing in the queue
RUN_LINE_BYTES = 60   # one TREC line: qid, Q0, passage id, rank, score, tag


@functools.lru_cache(maxsize=None)
def cost_data() -> dict:
    with open(DATA_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


# -- devices ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    name: str
    kind: str           # gpu | cpu
    half: float         # TFLOP/s, 16-bit
    bf16: bool          # half means bf16 (else fp16)
    fp32: float         # TFLOP/s, fp32 products (TF32 where the GPU has it)
    memory_gb: float
    efficiency: float
    startup_s: float

    @classmethod
    def named(cls, name: str) -> "Device":
        devices = cost_data()["devices"]
        key = name.lower()
        if key not in devices:
            raise ConfigError(f"unknown device {name!r} for the cost model: one of {', '.join(devices)} "
                              f"(umr/resources/cost.yaml, devices)")
        return cls(name=key, **devices[key])

    def flops_per_s(self, precision: str, parallel: int = 1) -> float:
        """Effective FLOP/s: the peak of the precision x efficiency (x threads on a CPU)."""
        peak = self.half if precision in ("bf16", "fp16") else self.fp32
        return peak * 1e12 * self.efficiency * (parallel if self.kind == "cpu" else 1)


def device_from_env(gpu: int) -> Device:
    """The device runtime requests are sized for: the CPU without GPUs; else the site's GPU
    model (UMR_SLURM_GPU_MODEL, e.g. a100 or a100_80gb) when the table knows it, else A100."""
    model = os.environ.get("UMR_SLURM_GPU_MODEL", "").lower()
    if gpu <= 0 or model == "cpu":
        return Device.named("cpu")
    for name in cost_data()["devices"]:
        if name != "cpu" and model.startswith(name):
            return Device.named(name)
    return Device.named(DEFAULT_DEVICE)


def compute_precision(setting: str, device: Device, lm: bool = False) -> str:
    """The precision a stage computes in (as umr.precision resolves it): `auto` is fp32 on a CPU;
    on a GPU bf16 where supported, else fp16 autocast for the retrievers and fp32 for mT5/mT0
    (`lm`: they overflow in fp16)."""
    if setting in ("bf16", "fp16", "fp32"):
        return setting
    if device.kind == "cpu":
        return "fp32"
    if device.bf16:
        return "bf16"
    return "fp32" if lm else "fp16"


# -- models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """A transformer's size: BERT (encoder) or T5 (encoder-decoder, gated FFN, untied LM head)."""

    arch: str
    vocab: int
    d_model: int
    layers: int
    heads: int
    d_ff: int
    d_kv: int = 0

    @property
    def width(self) -> int:
        return self.heads * self.d_kv if self.d_kv else self.d_model

    @property
    def ffn_matrices(self) -> int:
        return 3 if self.arch == "t5" else 2  # gated GELU: wi_0, wi_1, wo

    def encoder_flops(self, context: float) -> float:
        """FLOPs per token of one encoder forward pass over `context` tokens."""
        weights = 4 * self.d_model * self.width + self.ffn_matrices * self.d_model * self.d_ff
        return self.layers * (2 * weights + 4 * context * self.width)

    def decoder_flops(self, target: float, source: float) -> float:
        """FLOPs per target token of a T5 decoder forward pass (self + cross attention, LM head)."""
        weights = 8 * self.d_model * self.width + self.ffn_matrices * self.d_model * self.d_ff
        return self.layers * (2 * weights + 4 * (target + source) * self.width) + 2 * self.d_model * self.vocab

    @property
    def parameters(self) -> int:
        attention = 4 * self.d_model * self.width
        ffn = self.ffn_matrices * self.d_model * self.d_ff
        embeddings = self.vocab * self.d_model
        if self.arch == "t5":
            return self.layers * (2 * attention + 2 * ffn + attention) + 2 * embeddings  # + untied head
        return self.layers * (attention + ffn) + embeddings


def model_shape(config: Mapping, name: str) -> Shape:
    """Shape of a configured model: a hub model's from the table, a toy model's from toy_models."""
    model = config["models"][name]
    if "hub" in model:
        shapes = cost_data()["models"]
        if model["hub"] in shapes:
            return Shape(**shapes[model["hub"]])
        # A model the table does not know: size it as the paper's model of its kind (said once).
        stand_in = "facebook/mcontriever" if model["kind"] == "retriever" else "chaoweihuang/mt5-xl-lm-adapt"
        _warn_once(f"cost model: no shape for {model['hub']!r} (models.{name}.hub) in umr/resources/cost.yaml; "
                   f"its jobs are sized as {stand_in}'s")
        return Shape(**shapes[stand_in])
    settings = {**config["toy_models"][model["kind"]], **model.get("toy", {})}
    arch = "bert" if model["kind"] == "retriever" else "t5"
    heads = int(settings["heads"])
    return Shape(arch=arch, vocab=int(settings["vocab_size"]), d_model=int(settings["hidden"]),
                 layers=int(settings["layers"]), heads=heads, d_ff=int(settings["intermediate"]),
                 d_kv=int(settings["hidden"]) // heads if arch == "t5" else 0)


@functools.lru_cache(maxsize=None)
def _warn_once(message: str) -> None:
    log.warning(message)


# -- data sizes -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sizes:
    questions: Mapping[str, Mapping[str, int]]  # task -> split -> total over the languages
    passages: Mapping[str, int]                  # task -> corpus passages
    passage_bytes: float
    passage_tokens: float
    reranker_input_tokens: float
    question_tokens: float
    languages: int

    def per_language(self, task: str, split: str) -> int:
        return math.ceil(self.questions[task][split] / self.languages)


@functools.lru_cache(maxsize=8)
def _toy_sizes(toy_section: str, languages: tuple[str, ...]) -> Sizes:
    """The toy benchmark's sizes, counted by generating its world in memory (<1 s)."""
    from umr.toy import _Generator, sizes_from_config

    sizes = sizes_from_config(json.loads(toy_section), languages)
    gen = _Generator(sizes)
    gen.build_world()
    english = gen.english_passages()
    local = sum(len(gen.local_passages(lang)) for lang in sizes.languages)
    words = sum(len(p.text.split()) + len(p.title.split()) for p in english) / len(english)
    questions = {task: {split: count * len(languages) for split, count in splits.items()}
                 for task, splits in sizes.questions.items()}
    # Tokens per word of the toy tokenizers (trained on this text): ~1.3; questions ~10 words.
    return Sizes(questions=questions, passages={"xor_retrieve": len(english), "xor_full": len(english) + local},
                 passage_bytes=words * 7, passage_tokens=1.3 * words, reranker_input_tokens=1.3 * words + 12,
                 question_tokens=13, languages=len(languages))


def data_sizes(config: Mapping) -> Sizes:
    languages = tuple(config["languages"])
    if config["benchmark"] == "toy":
        return _toy_sizes(json.dumps(config.get("toy", {}), sort_keys=True), languages)
    table = cost_data()["benchmarks"][config["benchmark"]]
    return Sizes(questions=table["questions"], passages=table["passages"], passage_bytes=table["passage_bytes"],
                 passage_tokens=min(table["passage_tokens"], config["retrieval"]["max_length"]),
                 reranker_input_tokens=table["reranker_input_tokens"], question_tokens=table["question_tokens"],
                 languages=len(languages))


# -- jobs ---------------------------------------------------------------------------------------
@dataclass
class Estimate:
    """One job: its work, its time on the device, its outputs' size."""

    rule: str
    work: str = ""
    flops: float = 0.0
    seconds: float = 0.0
    gpus: int = 0
    disk_bytes: float = 0.0
    temporary: bool = False  # outputs deleted once consumed (not counted in the disk total)
    memory_mb: float = 0.0

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def _node_iteration(path: str) -> int:
    return path.count("kd-")


class CostModel:
    """Estimates for the jobs of one configuration on one device."""

    def __init__(self, config: Mapping, device: Device | None = None):
        self.config = config
        self.gpus = int(config["resources"]["gpu"])
        self.threads = int(config["resources"]["threads"])
        self.device = device or device_from_env(self.gpus)
        self.cpu = Device.named("cpu")
        self.sizes = data_sizes(config)
        self.retriever = model_shape(config, config["umr"]["retriever"])
        self.dim = self.retriever.d_model
        self.rates = cost_data()["cpu_rates"]

    # -- helpers
    def _gpu_seconds(self, flops: float, precision: str) -> float:
        """Start-up + FLOPs on the job's device (the GPU, or the CPU's threads without one)."""
        device = self._device()
        return device.startup_s + flops / device.flops_per_s(precision, self.threads)

    def _device(self) -> Device:
        return self.device if self.gpus > 0 else self.cpu

    def _precision(self, *keys: str, lm: bool = False) -> str:
        node: Any = self.config
        for key in keys:
            node = node.get(key, {}) if isinstance(node, Mapping) else {}
        return compute_precision(node if isinstance(node, str) else "auto", self._device(), lm=lm)

    def rerank_flops(self, shape: Shape, pairs: int, corpus: int) -> float:
        """The LM's FLOPs for `pairs` (question, passage) pairs: each distinct passage is encoded once
        per job (umr.rerank), each pair decodes its question. Distinct passages are estimated as
        random draws from the corpus, corpus x (1 - exp(-pairs / corpus)): all of them at paper
        scale (438,300 pairs of 44 M passages), about half on the toy (3,000 pairs of 2,260)."""
        s, t = self.sizes.reranker_input_tokens, self.sizes.question_tokens
        distinct = corpus * -math.expm1(-pairs / corpus)
        return distinct * s * shape.encoder_flops(s) + pairs * t * shape.decoder_flops(t, s)

    def rerank_chunks(self, task: str, split: str, top_k: int) -> int:
        """Chunks of one language's reranking: a fixed number, or (`auto`) ceil(pairs / chunk_pairs),
        so that a chunk's work, not the split's name, decides (a dev split is one chunk)."""
        r = self.config["umr"]["rerank"]
        if r["chunks"] != "auto":
            return int(r["chunks"])
        pairs = self.sizes.per_language(task, split) * top_k
        return max(1, math.ceil(pairs / r["chunk_pairs"]))

    # -- per rule
    def estimate(self, rule: str, wc: Mapping[str, str]) -> Estimate:
        method = getattr(self, f"_{rule}", None)
        if method is None:
            # tables, plots, metrics (seconds); the toy's own data and model builds (not modelled)
            return Estimate(rule, work="(not modelled)", seconds=5.0)
        return method(wc)

    def _encode_corpus(self, wc) -> Estimate:
        n = self.sizes.passages[wc["task"]] / int(wc["shards"])
        tokens = self.sizes.passage_tokens
        flops = n * tokens * self.retriever.encoder_flops(tokens)
        width = 2 if self.config["retrieval"]["fp16_embeddings"] else 4
        return Estimate("encode_corpus", f"{n:,.0f} passages", flops,
                        self._gpu_seconds(flops, self._precision("retrieval", "precision")), self.gpus,
                        n * self.dim * width, temporary=True, memory_mb=4000 + n * self.dim * width / 1e6)

    def _build_index(self, wc) -> Estimate:
        n = self.sizes.passages[wc["task"]] / int(wc["shards"])
        size = n * self.dim * 4
        seconds = self.cpu.startup_s + 2 * size / 1e6 / self.rates["io_mb_s"]
        return Estimate("build_index", f"{n:,.0f} vectors", 0.0, seconds, 0, size, memory_mb=1000 + size / 1e6 * 1.1)

    def _retrieve(self, wc) -> Estimate:
        task = wc["task"]
        q, p = self.sizes.questions[task][wc["split"]], self.sizes.passages[task]
        tq = self.sizes.question_tokens
        encode = q * tq * self.retriever.encoder_flops(tq)
        search = 2.0 * q * p * self.dim
        seconds = self.cpu.startup_s + encode / self.cpu.flops_per_s("fp32", self.threads)
        if self.config["retrieval"]["gpu_search"] and self.gpus > 0:
            seconds += search / self.device.flops_per_s("fp32")
        else:
            seconds += search / (self.rates["search_gflops"] * 1e9 * self.threads)
        top_k = self.config["retrieval"]["top_k"]
        shard_bytes = p / self.config["retrieval"]["shards"] * self.dim * 4
        return Estimate("retrieve", f"{q:,} questions x {p:,.0f} passages", encode + search, seconds,
                        1 if self.config["retrieval"]["gpu_search"] and self.gpus > 0 else 0,
                        q * top_k * RUN_LINE_BYTES, memory_mb=3000 + shard_bytes / 1e6 + q * top_k * 16 * 2 / 1e6)

    def _rerank(self, wc) -> Estimate:
        spec = RerankSpec.parse(wc["rtag"])
        shape = model_shape(self.config, spec.reranker)
        if "chunks" in wc:
            pairs = math.ceil(self.sizes.per_language(wc["task"], wc["split"]) / int(wc["chunks"])) * spec.top_k
        else:  # umr.rerank.group_languages: one job, every language of the split
            pairs = self.sizes.per_language(wc["task"], wc["split"]) * self.sizes.languages * spec.top_k
        flops = self.rerank_flops(shape, pairs, self.sizes.passages[wc["task"]])
        precision = compute_precision(self.config["umr"]["rerank"]["dtype"], self._device(), lm=True)
        return Estimate("rerank", f"{pairs:,} pairs", flops, self._gpu_seconds(flops, precision), self.gpus,
                        pairs * RUN_LINE_BYTES, memory_mb=8000 + shape.parameters * 4 / 1e6)

    def _training(self, rule: str, questions: int, batch: int, passages: int, epochs: int, grad_cache: bool,
                  precision: str, shape: Shape, texts: int = 0) -> Estimate:
        steps = math.ceil(questions / batch) * epochs
        tq, tp = self.sizes.question_tokens, self.sizes.passage_tokens
        forward = batch * tq * shape.encoder_flops(tq) + batch * passages * tp * shape.encoder_flops(tp)
        flops = steps * forward * (4 if grad_cache else 3)
        weights = 2 * shape.parameters * 4  # query + passage encoder, fp32
        # host memory: weights, AdamW's two moments and a checkpoint copy (4x), plus the training
        # passages' texts held as Python strings (~1.5 KB each)
        return Estimate(rule, f"{steps:,} steps x {batch * passages:,} passages", flops,
                        self._gpu_seconds(flops, precision), self.gpus, weights,
                        memory_mb=4000 + 4 * weights / 1e6 + texts * 1500 / 1e6)

    def _distill(self, wc) -> Estimate:
        spec = DistillSpec.parse(wc["dtag"])
        d, task = self.config["umr"]["distill"], wc["task"]
        questions = self.sizes.questions[task]["train"]
        texts = min(questions * RerankSpec.parse(wc["rtag"]).top_k, self.sizes.passages[task])
        precision = self._precision("umr", "distill", "precision")
        estimate = self._training("distill", questions - spec.val_questions, spec.batch_size,
                                  spec.passages_per_question, spec.epochs, d["grad_cache"], precision, self.retriever,
                                  texts)
        if spec.keep == "final":
            return estimate
        # keep best_val_rank: every epoch encodes the held-out questions and their 1 + H passages each
        # (forward only): 1,000 x 31 passages x 10 epochs is ~2% of XOR-Retrieve's training FLOPs.
        tq, tp, shape = self.sizes.question_tokens, self.sizes.passage_tokens, self.retriever
        flops = spec.epochs * spec.val_questions * (tq * shape.encoder_flops(tq)
                                                    + (1 + spec.val_hard_negatives) * tp * shape.encoder_flops(tp))
        return replace(estimate, work=f"{estimate.work} + {spec.epochs} validations",
                       flops=estimate.flops + flops, seconds=estimate.seconds + self._gpu_seconds(flops, precision))

    def _genq_count(self, task: str) -> int:
        return self.sizes.questions[mgenq_count_task(self.config, task)]["train"]

    def _generate_questions(self, wc) -> Estimate:
        spec = GenQSpec.parse(wc["gtag"])
        shape = model_shape(self.config, spec.generator)
        n = self._genq_count(wc["task"])
        s, g = self.sizes.reranker_input_tokens, spec.max_new_tokens
        flops = n * (s * shape.encoder_flops(s) + g * shape.decoder_flops(g / 2, s))
        precision = compute_precision(self.config["baselines"]["mgenq"]["sampling"]["dtype"], self._device(), lm=True)
        return Estimate("generate_questions", f"{n:,} questions of <= {g} tokens", flops,
                        self._gpu_seconds(flops, precision), self.gpus, n * 200,
                        memory_mb=8000 + shape.parameters * 4 / 1e6)

    def _train_mgenq(self, wc) -> Estimate:
        spec = ContrastiveSpec.parse(wc["ctag"])
        train = self.config["baselines"]["mgenq"]["train"]
        return self._training("train_mgenq", self._genq_count(wc["task"]), spec.batch_size, 1, spec.epochs,
                              train["grad_cache"], self._precision("baselines", "mgenq", "train", "precision"),
                              self.retriever)

    def _corpus_bytes(self, task: str) -> float:
        return self.sizes.passages[task] * self.sizes.passage_bytes

    def _scan(self, rule: str, task: str, out_fraction: float, memory_mb: float) -> Estimate:
        size = self._corpus_bytes(task)
        return Estimate(rule, f"{size / 1e9:,.1f} GB of TSV", 0.0,
                        self.cpu.startup_s + size / 1e6 / self.rates["scan_mb_s"], 0, size * out_fraction,
                        memory_mb=memory_mb)

    def _corpus_offsets(self, wc) -> Estimate:
        p = self.sizes.passages[wc["task"]]
        return self._scan("corpus_offsets", wc["task"], 20 / self.sizes.passage_bytes, 1000 + p * 40 / 1e6)

    def _bm25_split_collection(self, wc) -> Estimate:
        return self._scan("bm25_split_collection", "xor_full", 1.0, 2000)

    def _bm25_index(self, wc) -> Estimate:
        task = wc.get("task", "xor_retrieve")
        p = self.sizes.passages[task] / (1 if task == "xor_retrieve" else 13)  # CORA: 13 languages
        seconds = self.cpu.startup_s + p / (self.rates["bm25_index_docs_s"] * self.threads)
        return Estimate("bm25_index", f"{p:,.0f} passages", 0.0, seconds, 0, p * self.sizes.passage_bytes * 0.6,
                        memory_mb=8000)

    def _bm25_search(self, wc) -> Estimate:
        q = self.sizes.per_language(wc["task"], wc["split"])
        seconds = self.cpu.startup_s + 20 + q / (self.rates["bm25_search_queries_s"] * self.threads)
        return Estimate("bm25_search", f"{q:,} questions", 0.0, seconds, 0, q * 100 * RUN_LINE_BYTES,
                        memory_mb=4000)

    def _evaluate(self, wc) -> Estimate:
        q = self.sizes.questions[wc["task"]][wc["split"]]
        pairs = q * self.config["retrieval"]["top_k"]
        p = self.sizes.passages[wc["task"]]
        return Estimate("evaluate", f"{pairs:,} passages read", 0.0,
                        self.cpu.startup_s + pairs / self.rates["eval_pairs_s"], 0, 10_000,
                        memory_mb=2000 + p * 40 / 1e6)

    def _download_corpus(self, wc) -> Estimate:
        size = self._corpus_bytes(wc["task"])
        return Estimate("download_corpus", f"{size / 1e9:,.1f} GB", 0.0, size / 1e6 / self.rates["download_mb_s"],
                        0, size)

    def _fetch_model(self, wc) -> Estimate:
        size = model_shape(self.config, wc["name"]).parameters * 4
        return Estimate("fetch_model", f"{size / 1e9:,.1f} GB", 0.0, size / 1e6 / self.rates["download_mb_s"], 0,
                        size)

    # -- requests
    def runtime_request(self, estimate: Estimate, attempt: int = 1) -> int:
        """Minutes to ask for: estimate x safety, at least MIN_REQUEST_MIN, doubled per retry, capped
        at the site maximum (a job that reaches the cap resumes from its checkpoint on retry)."""
        safety = float(self.config["resources"]["runtime_safety"])
        minutes = max(MIN_REQUEST_MIN, math.ceil(estimate.seconds * safety / 60)) * 2 ** (attempt - 1)
        return min(minutes, max_runtime_minutes())


def max_runtime_minutes() -> int:
    """The site's longest job (UMR_SLURM_MAX_RUNTIME: minutes, or e.g. 24h, 2d, 1-12:00:00)."""
    value = os.environ.get("UMR_SLURM_MAX_RUNTIME", "").strip()
    if not value:
        return DEFAULT_MAX_RUNTIME_MIN
    m = re.fullmatch(r"(\d+)\s*(m|min|h|d)?", value)
    if m:
        return int(m.group(1)) * {None: 1, "m": 1, "min": 1, "h": 60, "d": 1440}[m.group(2)]
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", value)  # SLURM's [D-]HH:MM[:SS]
    if m:
        days, hours, minutes = int(m.group(1) or 0), int(m.group(2)), int(m.group(3))
        return days * 1440 + hours * 60 + minutes
    raise ConfigError(f"UMR_SLURM_MAX_RUNTIME={value!r}: expected minutes (1440), 24h, 2d or SLURM's D-HH:MM:SS")


def runtime_function(model: CostModel, rule: str) -> Callable:
    """A Snakemake `runtime` resource: the job's request from its wildcards and attempt."""

    def runtime(wildcards, attempt):
        return model.runtime_request(model.estimate(rule, dict(wildcards.items())), attempt)

    return runtime


def memory_function(model: CostModel, rule: str, floor_mb: int = 2000) -> Callable:
    """A Snakemake `mem_mb` resource that follows the job's input size (the estimate's memory)."""

    def mem_mb(wildcards):
        return max(floor_mb, math.ceil(model.estimate(rule, dict(wildcards.items())).memory_mb / 1000) * 1000)

    return mem_mb


# -- the report -------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    """One job of a Snakemake dry run: rule, wildcards and the resources it requests."""

    rule: str
    wildcards: dict[str, str]
    resources: dict[str, str]
    local: bool
    estimate: Estimate | None = None
    request_min: int = 0
    over_request: bool = False
    over_cap: bool = False


def parse_dry_run(text: str) -> list[Job]:
    """The job blocks of `snakemake -n` output (rule, wildcards, resources)."""
    jobs = []
    for m in re.finditer(r"^(local)?rule (\w+):\n((?:    .*\n?)+)", text, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", m.group(3), re.M))
        wildcards = dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if "=" in kv)
        resources = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
        jobs.append(Job(m.group(2), wildcards, resources, local=bool(m.group(1))))
    return jobs


def dry_run(configfiles: Sequence[str], device: Device, workdir: str | Path | None = None,
            targets: Sequence[str] = ("all",)) -> list[Job]:
    """Plan the DAG of the configuration's `targets` (nothing runs) with runtime requests sized for `device`."""
    env = dict(os.environ, UMR_SLURM_GPU_MODEL=device.name,
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    with tempfile.TemporaryDirectory(prefix="umr-cost-") as tmp:
        cmd = [sys.executable, "-m", "snakemake", *targets, "-n", "--cores", "1024", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir or tmp)]
        # the Snakefile's own default (config.yaml) is relative to the work directory: name it
        cmd += ["--configfile", *[str(Path(f).resolve()) for f in configfiles or [REPO / "config.yaml"]]]
        log.info("planning the DAG: %s", " ".join(cmd[2:]))
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise UMRError(f"snakemake dry run failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return parse_dry_run(done.stdout + done.stderr)


def load_config(configfiles: Sequence[str]) -> dict:
    """The merged, validated configuration (config.yaml when no file is given), as Snakemake sees it."""
    from umr.config import load_config_files

    return load_config_files(*(configfiles or [str(REPO / "config.yaml")]))


def assess(jobs: list[Job], model: CostModel) -> dict[str, Any]:
    """Estimate every job; totals per rule and overall."""
    cap = max_runtime_minutes()
    per_rule: dict[str, dict[str, Any]] = {}
    disk_by_iteration: dict[int, float] = {}
    for job in jobs:
        if job.rule == "all":
            continue
        est = job.estimate = model.estimate(job.rule, job.wildcards)
        runtime = job.resources.get("runtime", "")
        job.request_min = int(runtime) if runtime.isdigit() else 0
        job.over_request = not job.local and job.request_min > 0 and est.seconds > job.request_min * 60
        job.over_cap = not job.local and est.seconds > cap * 60
        row = per_rule.setdefault(job.rule, {"jobs": 0, "work": "", "hours": 0.0, "max_job_hours": 0.0,
                                             "gpu_hours": 0.0, "requested_gpu_hours": 0.0, "request_min": [],
                                             "over_request": 0, "over_cap": 0, "disk_gb": 0.0, "local": job.local})
        row["jobs"] += 1
        row["hours"] += est.hours
        if est.hours >= row["max_job_hours"]:
            row["max_job_hours"], row["work"] = est.hours, est.work  # the longest job's work
        row["gpu_hours"] += est.hours * est.gpus
        row["requested_gpu_hours"] += job.request_min / 60 * est.gpus
        if job.request_min:
            row["request_min"].append(job.request_min)
        row["over_request"] += job.over_request
        row["over_cap"] += job.over_cap
        if not est.temporary:
            row["disk_gb"] += est.disk_bytes / 1e9
            iteration = _node_iteration("/".join(job.wildcards.values()))
            disk_by_iteration[iteration] = disk_by_iteration.get(iteration, 0.0) + est.disk_bytes / 1e9
    estimated = [j for j in jobs if j.estimate is not None]
    temp_peak = max((j.estimate.disk_bytes for j in estimated if j.estimate.temporary), default=0.0)
    return {
        "device": model.device.name,
        "max_runtime_min": cap,
        "runtime_safety": model.config["resources"]["runtime_safety"],
        "jobs": len(estimated),
        "total_gpu_hours": sum(r["gpu_hours"] for r in per_rule.values()),
        "total_cpu_job_hours": sum(r["hours"] for r in per_rule.values() if not r["local"] and not r["gpu_hours"]),
        "attempt1_requested_gpu_hours": sum(r["requested_gpu_hours"] for r in per_rule.values()),
        "max_job_hours": max((j.estimate.hours for j in estimated if not j.local), default=0.0),
        "jobs_over_request": sum(j.over_request for j in estimated),
        "jobs_over_cap": sum(j.over_cap for j in estimated),
        "disk_gb_by_iteration": {str(k): round(v, 1) for k, v in sorted(disk_by_iteration.items())},
        "disk_gb_total": round(sum(disk_by_iteration.values()), 1),
        "temporary_gb_per_job_max": round(temp_peak / 1e9, 1),
        "rules": per_rule,
    }


def _duration(minutes: int) -> str:
    return f"{minutes} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _hours(h: float) -> str:
    return f"{h:,.2f}" if h < 10 else f"{h:,.0f}"


def format_report(summary: Mapping[str, Any], flagged: Sequence[Job]) -> str:
    lines = [f"Cost of the DAG on {summary['device']} (requests: estimate x {summary['runtime_safety']}, "
             f"capped at {summary['max_runtime_min'] / 60:g} h = UMR_SLURM_MAX_RUNTIME)", ""]
    header = ("rule", "jobs", "work of the longest job", "est h/job (max)", "est h total", "GPU-h", "request/job",
              "> request", "> cap", "disk GB")
    rows = []
    for rule, r in sorted(summary["rules"].items(), key=lambda kv: -kv[1]["hours"]):
        requests = sorted(set(r["request_min"]))
        request = ("local" if r["local"] else "-" if not requests else _duration(requests[0]) if len(requests) == 1
                   else f"{_duration(requests[0])} - {_duration(requests[-1])}")
        rows.append((rule, str(r["jobs"]), r["work"], _hours(r["max_job_hours"]), _hours(r["hours"]),
                     _hours(r["gpu_hours"]) if r["gpu_hours"] else "-", request, str(r["over_request"] or "-"),
                     str(r["over_cap"] or "-"), f"{r['disk_gb']:,.1f}"))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in (header, *rows):
        lines.append("  ".join(str(x).ljust(w) if i in (0, 2, 6) else str(x).rjust(w)
                               for i, (x, w) in enumerate(zip(row, widths))))
    lines.append("")
    if summary["total_gpu_hours"]:
        lines += [f"total GPU-hours (estimate):       {summary['total_gpu_hours']:,.0f}",
                  f"GPU-hours reserved at attempt 1:  {summary['attempt1_requested_gpu_hours']:,.0f} "
                  f"({summary['attempt1_requested_gpu_hours'] / summary['total_gpu_hours']:.2f}x the estimate)"]
    else:
        lines.append("GPU-hours:                        none (resources.gpu: 0)")
    disk = ", ".join(f"{k}: {v:,.0f}" for k, v in summary["disk_gb_by_iteration"].items())
    lines += [f"CPU job-hours (estimate):         {summary['total_cpu_job_hours']:,.1f}",
              f"longest job:                      {summary['max_job_hours']:,.1f} h",
              f"jobs over their request:          {summary['jobs_over_request']}",
              f"jobs over the site cap:           {summary['jobs_over_cap']}",
              f"disk kept, by iteration (GB):     {disk}",
              f"disk kept in total:               {summary['disk_gb_total']:,.0f} GB "
              f"(+ up to {summary['temporary_gb_per_job_max']:,.0f} GB per encode job until its index is built)"]
    for job in flagged:
        why = "over the site cap" if job.over_cap else "over its request"
        lines.append(f"FLAG {job.rule} {job.wildcards}: estimate {job.estimate.hours:.1f} h, request "
                     f"{job.request_min / 60:g} h ({why})")
    return "\n".join(lines)


# -- calibration against a toy run's benchmark files ------------------------------------------
_BENCHMARK = re.compile(
    r"(?P<task>xor_retrieve|xor_full)/(?P<path>.*)/benchmarks/(?P<file>[^/]+)\.tsv$")


_RERANK_LOG = re.compile(r"(\d+) pairs to score, (\d+) reused from earlier reranking")


def _scored_fraction(log: Path) -> float:
    """The share of a rerank job's pairs it scored itself (its log's count line; 1 without one)."""
    try:
        counts = _RERANK_LOG.findall(log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return 1.0
    if not counts:
        return 1.0
    # a job of umr.rerank.group_languages logs one count line per language
    scored, reused = (sum(int(c[i]) for c in counts) for i in (0, 1))
    return scored / (scored + reused) if scored + reused else 1.0


def benchmark_jobs(results_dir: str | Path) -> list[tuple[str, dict[str, str], float, Path]]:
    """(rule, wildcards, measured seconds, the job's log) of every GPU-rule benchmark file of a run's results."""
    out = []
    for path in sorted(Path(results_dir).rglob("benchmarks/*.tsv")):
        m = _BENCHMARK.search(path.as_posix())
        if not m:
            continue
        parts, name = m.group("path").split("/"), m.group("file")
        wc: dict[str, str] = {"task": m.group("task")}
        if (e := re.fullmatch(r"encode_corpus\.shard-(\d+)-of-(\d+)", name)):
            rule = "encode_corpus"
            wc.update({"shard": e.group(1), "shards": e.group(2)})
        elif (e := re.fullmatch(r"rerank\.(\w+)\.all-languages", name)):
            rule = "rerank"
            wc.update({"rtag": parts[-1], "split": e.group(1)})
        elif (e := re.fullmatch(r"rerank\.(\w+)\.(\w+)\.chunk-(\d+)-of-(\d+)", name)):
            rule = "rerank"
            wc.update({"rtag": parts[-1], "split": e.group(1), "lang": e.group(2),
                       "chunk": e.group(3), "chunks": e.group(4)})
        elif name == "distill":
            rule = "distill"
            wc.update({"rtag": parts[-2], "dtag": parts[-1]})
        elif name == "generate_questions":
            rule = "generate_questions"
            wc.update({"gtag": parts[-1]})
        elif name == "train_mgenq":
            rule = "train_mgenq"
            wc.update({"gtag": parts[-2], "ctag": parts[-1]})
        else:
            continue
        with open(path, encoding="utf-8") as f:
            f.readline()
            seconds = float(f.readline().split("\t")[0])
        # each rule's log sits beside its benchmark file: <node>/logs/<name>.log
        out.append((rule, wc, seconds, path.parent.parent / "logs" / f"{name}.log"))
    return out


def calibration(results_dir: str | Path, config: Mapping) -> dict[str, dict[str, float]]:
    """Per stage: jobs, predicted and measured seconds (summed) of a local run's benchmark files."""
    model = CostModel(config, Device.named("cpu"))
    stages: dict[str, dict[str, float]] = {}
    for rule, wc, seconds, log in benchmark_jobs(results_dir):
        row = stages.setdefault(rule, {"jobs": 0, "predicted_s": 0.0, "measured_s": 0.0})
        row["jobs"] += 1
        predicted = model.estimate(rule, wc).seconds
        if rule == "rerank":
            # The estimate scores every pair (what a request must cover); a run scores only the pairs
            # no earlier reranking scored (the score cache, on the toy most of the later ones): compare
            # like with like, the start-up plus the work of the pairs this job scored.
            startup = model._device().startup_s
            predicted = startup + (predicted - startup) * _scored_fraction(log)
        row["predicted_s"] += predicted
        row["measured_s"] += seconds
    for row in stages.values():
        row["ratio"] = row["predicted_s"] / row["measured_s"]
    return stages


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.cost", description=(
        "What a configuration's run costs: per rule the jobs, work, estimated hours, runtime requests and disk "
        "(a Snakemake dry run; nothing runs)."))
    p.add_argument("--configfile", nargs="+", default=[], help="config file(s), merged as Snakemake does "
                   "(default: config.yaml)")
    p.add_argument("--gpu", default=None, help="device the estimates are for: " + ", ".join(cost_data()["devices"])
                   + f" (default: {DEFAULT_DEVICE} for a config with GPUs, cpu without)")
    p.add_argument("--targets", nargs="+", default=["all"], help="Snakemake targets to cost (default: all, what "
                   "`snakemake --profile slurm` builds; `all ablations` adds the grids of Tables 4-6)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--calibrate", metavar="RESULTS_DIR", help="compare the estimates with a local run's benchmark "
                   "files (e.g. results/toy) per stage, instead of the report")
    return p


def _main(args: argparse.Namespace) -> None:
    config = load_config(args.configfile)
    if args.calibrate:
        stages = calibration(args.calibrate, config)
        if args.json:
            print(json.dumps(stages, indent=2))
            return
        print(f"{'stage':20} {'jobs':>5} {'predicted s':>12} {'measured s':>11} {'ratio':>6}")
        for rule, r in sorted(stages.items()):
            print(f"{rule:20} {r['jobs']:5d} {r['predicted_s']:12.0f} {r['measured_s']:11.0f} {r['ratio']:6.2f}")
        return
    if args.gpu:
        device = Device.named(args.gpu)
    else:
        device = Device.named(DEFAULT_DEVICE if int(config["resources"]["gpu"]) > 0 else "cpu")
    model = CostModel(config, device)
    jobs = dry_run(args.configfile, device, targets=args.targets)
    summary = assess(jobs, model)
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
        return
    flagged = [j for j in jobs if j.over_request or j.over_cap]
    print(format_report(summary, flagged))


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
