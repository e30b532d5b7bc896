# Helpers shared by the stage files (*.smk): wildcard constraints, path functions, targets.
# Rules never build paths by hand; they call these functions or use the patterns below.
import json
import os
import re
import shlex
import sys

from umr import report as report_paths

from umr.lineage import (BM25_NODE, CONTRASTIVE_TAG, GENQ_TAG, NAME, RETRIEVER_NODE, UMR_NODE, ContrastiveSpec,
                         DistillSpec, GenQSpec, Node, RerankSpec, score_cache_sources)
from umr.cost import CostModel, memory_function, runtime_function
from umr.slurm_names import install as install_short_slurm_log_names
from umr.plan import (ablation_only_evaluations, default_distill, default_genq, default_rerank, main_evaluations,
                      mgenq_count_task, planned_reranks, report_rerank)

# Stages run as `python -m umr.<stage>`. `python` is the interpreter running Snakemake
# (its venv's bin first on PATH) unless `--sdm conda` activates a rule's env, and
# `umr` is this checkout; jobs inherit both, locally and on SLURM nodes.
os.environ.update(
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])),
    # How often distillation checkpoints changes no result, so it is not a rule param (a changed
    # param would rerun every distill job); `python -m umr.distill` reads it from here.
    UMR_CHECKPOINT_EVERY=str(config["umr"]["distill"]["checkpoint_every"]),
)

# SLURM log directories are named after a job's wildcards, whole lineage paths included: the
# submitting process shortens names over 200 bytes (a name over 255 fails the submission).
if workflow.is_main_process:
    install_short_slurm_log_names()

TASKS = ("xor_retrieve", "xor_full")
SPLITS = ("train", "dev")
DATASET = config["dataset"]
RESULTS = f"results/{DATASET}"
LANGUAGES = config["languages"]
THREADS = config["resources"]["threads"]
GPUS = config["resources"]["gpu"]
SEARCH_GPUS = min(GPUS, 1) if config["retrieval"]["gpu_search"] else 0  # retrieve searches on one GPU (faiss-gpu)
PLANNED_RERANKS = planned_reranks(config)

wildcard_constraints:
    dataset=re.escape(DATASET),
    task="|".join(TASKS),
    split="|".join(SPLITS),
    lang="|".join(LANGUAGES),
    node=RETRIEVER_NODE,
    rtag=r"rr-[^/]+",
    dtag=r"kd-[^/]+",
    enode=rf"{BM25_NODE}|{RETRIEVER_NODE}(?:/rr-[^/]+)?",
    collection=r"en|" + "|".join(LANGUAGES),
    name=NAME,
    shard=r"[0-9]+",
    shards=r"[0-9]+",
    chunk=r"[0-9]+",
    chunks=r"[0-9]+",
    gparent=UMR_NODE,  # mGenQ: the retriever node the questions hang off (and training starts from)
    gtag=GENQ_TAG,
    ctag=CONTRASTIVE_TAG,


# -- data -------------------------------------------------------------------------------------
def questions_file(task, split):
    return f"{RESULTS}/data/{task}/{split}.jsonl"


def corpus_file(task):
    return f"{RESULTS}/data/corpus/{task}.tsv"


def offsets_file(task):
    return f"{RESULTS}/data/corpus/{task}.offsets.npz"


def task_questions(wildcards):
    return questions_file(wildcards.task, wildcards.split)


def task_train_questions(wildcards):
    return questions_file(wildcards.task, "train")


def genq_count_questions(wildcards):
    """The training questions whose number per language mGenQ generates (baselines.mgenq.count_from)."""
    return questions_file(mgenq_count_task(config, wildcards.task), "train")


def task_corpus(wildcards):
    return corpus_file(wildcards.task)


def task_offsets(wildcards):
    return offsets_file(wildcards.task)


def english_gold(wildcards):
    """XOR-Full questions that are also in XOR-Retrieve have English answers (Table 7 subsets)."""
    return questions_file("xor_retrieve", wildcards.split) if wildcards.task == "xor_full" else []


def english_gold_option(wildcards, input):
    return f"--english-gold {input.english_gold}" if input.english_gold else ""


def hit_option(wildcards):
    """XOR-Full's top-k hit test (evaluate.hit); XOR-Retrieve's R@kt has the official script's only."""
    return f"--hit {config['evaluate']['hit']}" if wildcards.task == "xor_full" else ""


# -- models -------------------------------------------------------------------------------------
def model_dir(name):
    """Local directory of a named model: built here (toy) or fetched once from the hub."""
    source = "toy" if "toy" in config["models"][name] else "hub"
    return f"{RESULTS}/models/{source}/{name}"


def toy_model_options(wildcards):
    """Command-line options of `python -m umr.models` for a tiny model's settings."""
    model = config["models"][wildcards.name]
    settings = {**config["toy_models"][model["kind"]], **model["toy"]}
    return shlex.join(f"--{key.replace('_', '-')}={value}" for key, value in settings.items())


def toy_model_kind(wildcards):
    return config["models"][wildcards.name]["kind"]


def retriever_model(wildcards):
    """The checkpoint of a retriever node: the initial model, or the node's distilled retriever."""
    node = Node.parse(wildcards.node)
    if node.iteration == 0 and node.genq is None:
        return model_dir(node.root)
    return f"{RESULTS}/{wildcards.task}/{node.path}/retriever"


def reranker_model(wildcards):
    return model_dir(RerankSpec.parse(wildcards.rtag).reranker)


# -- lineage ----------------------------------------------------------------------------------
def shard_embeddings(wildcards):
    n = config["retrieval"]["shards"]
    return [f"{RESULTS}/{wildcards.task}/{wildcards.node}/index/shard-{i}-of-{n}.npy" for i in range(n)]


def shard_indexes(wildcards):
    return [path.removesuffix(".npy") + ".faiss" for path in shard_embeddings(wildcards)]


def rerank_chunks(task, rerank_node, split, langs):
    """A reranking's chunk files: umr.rerank.chunks per language, or (auto) as many as its pairs need."""
    top_k = RerankSpec.parse(rerank_node.rsplit("/", 1)[-1]).top_k
    n = COST.rerank_chunks(task, split, top_k)
    return [f"{RESULTS}/{task}/{rerank_node}/runs/{split}/{lang}.chunk-{c}-of-{n}.trec" for lang in langs for c in range(n)]


# A rerank job: one language and chunk of a split, or (umr.rerank.group_languages) every
# language of a split, chunk 0 of 1 each (the same files; `lang` is then no wildcard).
if config["umr"]["rerank"]["group_languages"]:
    RERANK_JOB = {
        "output": expand("results/{{dataset}}/{{task}}/{{node}}/{{rtag}}/runs/{{split}}/{lang}.chunk-0-of-1.trec",
                         lang=LANGUAGES),
        "log": "results/{dataset}/{task}/{node}/{rtag}/logs/rerank.{split}.all-languages.log",
        "benchmark": "results/{dataset}/{task}/{node}/{rtag}/benchmarks/rerank.{split}.all-languages.tsv",
    }
else:
    RERANK_JOB = {
        "output": "results/{dataset}/{task}/{node}/{rtag}/runs/{split}/{lang}.chunk-{chunk}-of-{chunks}.trec",
        "log": "results/{dataset}/{task}/{node}/{rtag}/logs/rerank.{split}.{lang}.chunk-{chunk}-of-{chunks}.log",
        "benchmark": "results/{dataset}/{task}/{node}/{rtag}/benchmarks/rerank.{split}.{lang}.chunk-{chunk}-of-{chunks}.tsv",
    }


def rerank_languages(wildcards):
    """The languages a rerank job scores (RERANK_JOB)."""
    lang = getattr(wildcards, "lang", None)
    return [lang] if lang else LANGUAGES


def rerank_chunk_options(wildcards):
    chunk = getattr(wildcards, "chunk", None)
    return f"--chunk {chunk} --num-chunks {wildcards.chunks}" if chunk is not None else ""


def rerank_cache(wildcards):
    """Reranked runs of earlier iterations with the same LM settings: their scores are reused."""
    node, spec = Node.parse(wildcards.node), RerankSpec.parse(wildcards.rtag)
    planned = PLANNED_RERANKS
    sources = [s for s in score_cache_sources(node, spec, default_rerank(config))
               if (wildcards.task, s, wildcards.split) in planned]
    langs = rerank_languages(wildcards)
    return [f for source in sources for f in rerank_chunks(wildcards.task, source, wildcards.split, langs)]


def distill_inputs(wildcards):
    return rerank_chunks(wildcards.task, f"{wildcards.node}/{wildcards.rtag}", "train", LANGUAGES)


def distill_options(wildcards):
    """Command-line options of `python -m umr.distill` for the settings in a `kd-` tag."""
    spec = DistillSpec.parse(wildcards.dtag)
    options = [
        f"--temperature={spec.temperature}",
        f"--batch-size={spec.batch_size}",
        f"--passages-per-question={spec.passages_per_question}",
        f"--epochs={spec.epochs}",
        f"--learning-rate={spec.learning_rate}",
        f"--warmup-steps={spec.warmup_steps}",
        f"--max-grad-norm={spec.max_grad_norm}",
        f"--seed={spec.seed}",
    ]
    options += [] if spec.in_batch_negatives else ["--no-in-batch-negatives"]
    options += ["--negate-teacher"] if spec.negate_teacher else []
    options += [f"--grad-scale={spec.grad_scale}"] if spec.grad_scale != 1.0 else []
    options += ["--strip-question-mark"] if spec.strip_question_mark else []
    if spec.keep != "final":
        options += [f"--keep={spec.keep}", f"--val-questions={spec.val_questions}",
                    f"--val-hard-negatives={spec.val_hard_negatives}"]
    return " ".join(options)


def grad_cache_options(settings):
    if not settings["grad_cache"]:
        return ""
    return (f"--grad-cache --query-chunk-size={settings['query_chunk_size']} "
            f"--passage-chunk-size={settings['passage_chunk_size']}")


def rerank_spec(wildcards):
    return RerankSpec.parse(wildcards.rtag)


def rerank_top_k(wildcards):
    return RerankSpec.parse(wildcards.rtag).top_k


def evaluated_runs(wildcards):
    """The run(s) an evaluation scores: a retriever's run, or all chunks of a reranking."""
    enode = wildcards.enode
    if enode == BM25_NODE:
        return bm25_runs(wildcards.task, wildcards.split)
    if enode.rsplit("/", 1)[-1].startswith(RerankSpec.PREFIX):
        return rerank_chunks(wildcards.task, enode, wildcards.split, LANGUAGES)
    return f"{RESULTS}/{wildcards.task}/{enode}/runs/{wildcards.split}.trec"


# -- baselines --------------------------------------------------------------------------------
def bm25_runs(task, split):
    return [f"{RESULTS}/{task}/{BM25_NODE}/runs/{split}/{lang}.trec" for lang in LANGUAGES]


def bm25_collection(wildcards):
    """XOR-Retrieve: the English collection; XOR-Full: the question language's own collection."""
    if wildcards.task == "xor_retrieve":
        return corpus_file("xor_retrieve")
    return f"{RESULTS}/xor_full/{BM25_NODE}/collections/{wildcards.collection}.tsv"


def bm25_index(wildcards):
    collection = "en" if wildcards.task == "xor_retrieve" else wildcards.lang
    return f"{RESULTS}/{wildcards.task}/{BM25_NODE}/index/{collection}"


def genq_model(wildcards):
    """The question generator's local checkpoint (a models entry, named in the genq- tag)."""
    return model_dir(GenQSpec.parse(wildcards.gtag).generator)


def genq_student(wildcards):
    """mGenQ training starts from the checkpoint of the node the questions hang off."""
    node = Node.parse(wildcards.gparent)
    if node.iteration == 0:
        return model_dir(node.root)
    return f"{RESULTS}/{wildcards.task}/{node.path}/retriever"


def genq_template(wildcards):
    """The tag's prompt: a template name, or the configured format string its custom-<hash> stands for."""
    from umr.baselines.prompts import TEMPLATES, template_for_key

    key = GenQSpec.parse(wildcards.gtag).template
    return key if key in TEMPLATES else template_for_key(key, config["baselines"]["mgenq"]["template"])


def genq_options(wildcards):
    """Command-line options of `python -m umr.baselines.mgenq generate` for a genq- tag."""
    spec, sampling = GenQSpec.parse(wildcards.gtag), config["baselines"]["mgenq"]["sampling"]
    return shlex.join([
        f"--top-p={spec.top_p}",
        f"--temperature={spec.temperature}",
        f"--max-new-tokens={spec.max_new_tokens}",
        f"--seed={spec.seed}",
        f"--batch-size={sampling['batch_size']}",
        f"--max-input-length={sampling['max_input_length']}",
        f"--dtype={sampling['dtype']}",
    ])


def contrastive_options(wildcards):
    """Command-line options of `python -m umr.baselines.mgenq train` for a ct- tag."""
    spec, train = ContrastiveSpec.parse(wildcards.ctag), config["baselines"]["mgenq"]["train"]
    options = [
        f"--temperature={spec.temperature}",
        f"--batch-size={spec.batch_size}",
        f"--epochs={spec.epochs}",
        f"--learning-rate={spec.learning_rate}",
        f"--warmup-steps={spec.warmup_steps}",
        f"--max-grad-norm={spec.max_grad_norm}",
        f"--seed={spec.seed}",
    ]
    return " ".join(options + [grad_cache_options(train)]).strip()


# -- targets ----------------------------------------------------------------------------------
# Two targets: `all` (the default: the method and its baselines) and `ablations` (the grids'
# variants, reusing what `all` built). Each has its metrics file and its tables and plots.
METRICS_FILES = {"all": "metrics.csv", "ablations": "metrics_ablations.csv"}


def evaluation_files(target):
    """Evaluation files of a target's systems (umr.plan: main_evaluations, ablation_only_evaluations)."""
    chosen = main_evaluations(config) if target == "all" else ablation_only_evaluations(config)
    return [f"{RESULTS}/{e.task}/{e.node}/eval/{e.split}.csv" for e in chosen]


def display_names():
    return [f"{name}={model.get('display', name)}" for name, model in config["models"].items()]


def target_files(target):
    """What `snakemake <target>` builds: the target's metrics file (when it has systems of its own)
    and its tables and plots (umr.report.report_files says which go where)."""
    metrics = [f"{RESULTS}/{METRICS_FILES[target]}"] if evaluation_files(target) else []
    return metrics + report_paths.report_files(config, RESULTS, target)


# -- resources ---------------------------------------------------------------------------------
# Runtime and memory follow each job's work (umr/cost.py; `python -m umr.cost` prints them all):
# runtime = estimate x resources.runtime_safety, doubled per retry, capped at the site's
# UMR_SLURM_MAX_RUNTIME (default 24 h). Estimates are for the site's GPU model
# (UMR_SLURM_GPU_MODEL when umr/resources/cost.yaml knows it, else an A100), or this CPU.
COST = CostModel(config)


def runtime_minutes(rule):
    """Runtime request (minutes) of a rule's job from its estimate and attempt."""
    return runtime_function(COST, rule)


def memory_mb(rule):
    """Memory request (MB) of a rule's job from its input sizes."""
    return memory_function(COST, rule)


# -- scheduling ---------------------------------------------------------------------------------
# Among jobs ready at once, Snakemake starts the higher priority first. On a few cores (the toy on
# a laptop) the LM's pre-training heads every UMR path, and after it the chain of the method, the
# training split's reranking -> distillation -> the new retriever's index and training-split
# retrieval, should not queue behind the baselines and the evaluation runs beside it.
PRIORITY_LM, PRIORITY_DISTILL, PRIORITY_CHAIN = 30, 20, 10


def chain_priority(wildcards):
    """Training-split jobs lead to the next distillation; an evaluation split's lead to a table row."""
    return PRIORITY_CHAIN if wildcards.split == "train" else 0


def toy_model_priority(wildcards):
    return PRIORITY_LM if config["models"][wildcards.name]["kind"] == "reranker" else PRIORITY_CHAIN


# Light rules run where Snakemake runs (on SLURM: the login node, no queueing): they read
# the small evaluation CSVs and write one table, plot or metrics file each. The report
# rules' names come from umr.tables.TABLES / umr.plots.PLOTS (rules/report.smk).
localrules:
    all,
    ablations,
    metrics,
    metrics_ablations,


def report_rule_names():
    from umr.plots import PLOTS
    from umr.tables import TABLES

    return [f"table_{t}" for t in TABLES] + [f"plot_{p}" for p in PLOTS]


workflow.localrules(*report_rule_names())  # what a `localrules:` line of those names does


# -- downloads (benchmark xor-tydi) -----------------------------------------------------------------
# Jobs never download: data files and hub models are fetched once by local rules
# (download_questions, download_corpus, fetch_model), and every job runs offline, so a
# compute node without internet fails at once instead of hanging on a hub request.
os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def download_key(wildcards):
    """A downloaded file's key in data.urls / MANIFEST.json: its path under results/<dataset>/data/."""
    if "qsplit" in wildcards.keys():
        return f"{wildcards.task}/{wildcards.qsplit}.jsonl"
    return f"corpus/{wildcards.task}.tsv"


def download_url(wildcards):
    return config["data"]["urls"][download_key(wildcards)]


def download_options(wildcards):
    """Manifest key and, when pinned in data.sha256, the expected checksum."""
    key = download_key(wildcards)
    pin = config["data"]["sha256"].get(key)
    return f"--key {key}" + (f" --sha256 {pin}" if pin else "")


def download_manifest(wildcards):
    return f"{RESULTS}/data/MANIFEST.json"


def hub_model_id(wildcards):
    return config["models"][wildcards.name]["hub"]


def hub_model_revision(wildcards):
    return config["models"][wildcards.name].get("revision", "main")


def hub_cache_option(wildcards):
    """`--hub-cache DIR` when the config names a pre-populated Hugging Face cache (offline clusters), else nothing."""
    cache = config.get("hub_cache")
    return f"--hub-cache {shlex.quote(os.path.expanduser(str(cache)))}" if cache else ""


def hub_models():
    return [name for name, model in config["models"].items() if "hub" in model]


def xor_tydi_files():
    """Every file of SPEC §2 (test questions included) and the hub models, for prefetching."""
    return [f"{RESULTS}/data/{key}" for key in config["data"]["urls"]] + [model_dir(n) for n in hub_models()]


def corpus_scan_mem_mb(wildcards, input):
    """Memory of `python -m umr.corpus`: ~1/4 of the TSV's size (id and offset lists), plus 1 GB."""
    return 1000 + int(input.size_mb / 4)


def default_genq_tags():
    """`genq-<tag>/ct-<tag>` of the configured mGenQ baseline (variants are named by their differences)."""
    generation, training = default_genq(config)
    return f"{generation.tag}/{training.tag}"
