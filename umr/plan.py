"""What a configuration asks for: the lineage nodes to evaluate.

Snakemake works backwards from these targets; everything upstream (indexes,
runs, reranking, distillation) follows from the lineage paths.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from umr.baselines.prompts import template_key
from umr.errors import ConfigError, UMRError
from umr.lineage import BM25_NODE, ContrastiveSpec, DistillSpec, GenQSpec, Node, RerankSpec


@dataclass(frozen=True)
class Evaluation:
    """One scored run: `results/<dataset>/<task>/<node>/eval/<split>.csv`."""

    task: str
    node: str  # a retriever node path, or a retriever node path + "/rr-<tag>"
    split: str


def default_rerank(config: dict) -> RerankSpec:
    r = config["umr"]["rerank"]
    return RerankSpec(r["reranker"], r["template"], r["aggregation"], r["top_k"])


def report_rerank(config: dict) -> RerankSpec:
    """The reranking of the "+ rerank" rows: the default one, umr.rerank.report_top_k deep."""
    spec, depth = default_rerank(config), config["umr"]["rerank"]["report_top_k"]
    return replace(spec, top_k=depth) if depth else spec


def default_distill(config: dict, **changes) -> DistillSpec:
    d = config["umr"]["distill"]
    # The validation settings only exist for keep: best_val_rank (with keep: final they change nothing).
    v = d["validation"]
    validation = ({"val_questions": v["questions"], "val_hard_negatives": v["hard_negatives"]}
                  if d["keep"] == "best_val_rank" else {})
    spec = DistillSpec(d["temperature"], d["batch_size"], d["passages_per_question"], d["in_batch_negatives"],
                       d["epochs"], d["learning_rate"], d["warmup_steps"], d["max_grad_norm"], d["seed"],
                       grad_scale=d["grad_scale"], strip_question_mark=d["strip_question_mark"], keep=d["keep"],
                       **validation)
    return DistillSpec(**{**spec.__dict__, **changes}) if changes else spec


def mgenq_generator(config: dict) -> str:
    """The mGenQ question generator: baselines.mgenq.generator, else the reranker LM (the toy's stand-in)."""
    name = config["baselines"]["mgenq"]["generator"] or config["umr"]["rerank"]["reranker"]
    models = config["models"]
    if name not in models:
        raise ConfigError(f"config key 'baselines.mgenq.generator': model {name!r} is not defined under 'models' "
                          f"({', '.join(models)})")
    if models[name]["kind"] not in ("generator", "reranker"):
        raise ConfigError(f"config key 'baselines.mgenq.generator': model {name!r} is a {models[name]['kind']}, "
                          "not a seq2seq LM (kind generator or reranker)")
    return name


def default_genq(config: dict) -> tuple[GenQSpec, ContrastiveSpec]:
    """mGenQ's generation and training settings (baselines.mgenq)."""
    m = config["baselines"]["mgenq"]
    try:
        template = template_key(m["template"])
    except UMRError as err:
        raise ConfigError(f"config key 'baselines.mgenq.template': {err}") from None
    s, t = m["sampling"], m["train"]
    generation = GenQSpec(mgenq_generator(config), template, s["top_p"], s["temperature"], s["max_new_tokens"],
                          m["seed"])
    training = ContrastiveSpec(t["temperature"], t["batch_size"], t["epochs"], t["learning_rate"], t["warmup_steps"],
                               t["max_grad_norm"], t["seed"])
    return generation, training


def mgenq_node(config: dict) -> Node:
    """The mGenQ retriever: trained on generated questions from the same initial retriever as UMR."""
    return Node(config["umr"]["retriever"]).with_genq(*default_genq(config))


def umr_chain(config: dict) -> list[Node]:
    """The main UMR lineage: the initial retriever and one node per iteration."""
    rerank, distill = default_rerank(config), default_distill(config)
    nodes = [Node(config["umr"]["retriever"])]
    for _ in range(config["umr"]["iterations"]):
        nodes.append(nodes[-1].child(rerank, distill))
    return nodes


def evaluations(config: dict) -> list[Evaluation]:
    """Every run the configuration reports, main lineage first."""
    from umr.ablations import evaluations as ablation_evaluations  # imports this module

    return list(dict.fromkeys(main_evaluations(config) + ablation_evaluations(config) + seed_evaluations(config)))


def ablation_only_evaluations(config: dict) -> list[Evaluation]:
    """The runs only the ablation grids and the seed replicates need (the `ablations` target;
    the rest is `all`'s)."""
    from umr.ablations import evaluations as ablation_evaluations

    main = set(main_evaluations(config))
    return [e for e in dict.fromkeys(ablation_evaluations(config) + seed_evaluations(config)) if e not in main]


SEEDS_TASK = "xor_retrieve"  # the seeds table replicates Table 3's rows


def seed_evaluations(config: dict) -> list[Evaluation]:
    """Table 3's distilled rows (UMR at each iteration, its "+ rerank") under every seed of
    ablations.seeds (umr.seeds), for the seeds table; [] with a single seed. The negated-teacher
    control and the baselines are not replicated: the first is a sanity check, the second do
    not depend on the distillation seed."""
    from umr.seeds import distill_seeds, lineage_node, replicate_path

    seeds = distill_seeds(config)
    if len(seeds) < 2:
        return []
    out = []
    for e in main_evaluations(config):
        parsed = lineage_node(e.node) if e.task == SEEDS_TASK else None
        if parsed is None or any(d.negate_teacher for _, d in parsed[0].steps):
            continue
        out += [Evaluation(e.task, path, e.split) for path in replicate_path(e.node, seeds)]
    return list(dict.fromkeys(out))


def _tasks(config: dict, tasks: list[str] | None) -> list[str]:
    """A per-task switch: its tasks (those of umr.tasks), or every task for null."""
    return list(config["umr"]["tasks"]) if tasks is None else [t for t in config["umr"]["tasks"] if t in tasks]


def bm25_tasks(config: dict) -> list[str]:
    """Tasks with a BM25 row (baselines.bm25.enabled, .tasks)."""
    b = config["baselines"]["bm25"]
    return _tasks(config, b["tasks"]) if b["enabled"] else []


def mgenq_tasks(config: dict) -> list[str]:
    """Tasks with an mGenQ row (baselines.mgenq.enabled, .tasks)."""
    m = config["baselines"]["mgenq"]
    return _tasks(config, m["tasks"]) if m["enabled"] else []


def mgenq_count_task(config: dict, task: str) -> str:
    """The task whose training questions set mGenQ's count per language (baselines.mgenq.count_from)."""
    source = config["baselines"]["mgenq"]["count_from"]
    return task if source == "task" else source


def last_rerank_tasks(config: dict) -> list[str]:
    """Tasks with a "UMR (last iteration) + rerank" row (umr.rerank.last_iteration_tasks)."""
    return _tasks(config, config["umr"]["rerank"]["last_iteration_tasks"])


def main_evaluations(config: dict) -> list[Evaluation]:
    """The method and its baselines (the default target `all`): the UMR chain, its reranked
    rows, the negated-teacher control, BM25 and mGenQ, per task and evaluation split."""
    rerank, reported = default_rerank(config), report_rerank(config)
    out: list[Evaluation] = []
    for task in config["umr"]["tasks"]:
        chain = umr_chain(config)
        nodes = [n.path for n in chain]
        # The paper's reranking rows: the initial retriever and (Table 3) the last iteration, reranked.
        nodes.append(chain[0].reranked(reported))
        if task in last_rerank_tasks(config):
            nodes.append(chain[-1].reranked(reported))
        if config["umr"]["control_negated_teacher"]:
            nodes.append(chain[0].child(rerank, default_distill(config, negate_teacher=True)).path)
        if task in bm25_tasks(config):
            nodes.append(BM25_NODE)
        if task in mgenq_tasks(config):
            nodes.append(mgenq_node(config).path)
        for split in config["eval_splits"]:
            out.extend(Evaluation(task, node, split) for node in dict.fromkeys(nodes))
    return list(dict.fromkeys(out))


def planned_reranks(config: dict) -> set[tuple[str, str, str]]:
    """(task, rerank node, split) of every reranking the plan computes anyway.

    Evaluated rerank nodes on their split, and the training-split reranking behind
    every distilled node on an evaluated path. Score caches only read from these,
    so reusing scores never schedules a reranking nobody asked for.
    """
    needed: set[tuple[str, str, str]] = set()
    for e in evaluations(config):
        parts = e.node.split("/")
        if parts[-1].startswith(RerankSpec.PREFIX):
            needed.add((e.task, e.node, e.split))
        for i in range(2, len(parts), 2):
            if parts[i].startswith(DistillSpec.PREFIX):
                needed.add((e.task, "/".join(parts[:i]), "train"))
    return needed
