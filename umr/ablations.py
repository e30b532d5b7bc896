"""Ablation grids: the config's `ablations` section as extra lineage nodes to evaluate.

Each knob lists values; every variant is a lineage node (`umr.lineage`), so two
variants that differ only in distillation share their parent's index, retrieval
and reranking, and a variant that equals the default *is* the main chain's node.

- ``one_at_a_time`` (the paper's Tables 4-6): one knob changes, the others keep the
  defaults of `umr.rerank` / `umr.distill`; the variant is distilled from the
  initial retriever (iteration 1), like "UMR (iter=1)" it is compared with.
- ``grid``: every combination of the knobs' values; a combination's settings are
  used at every iteration of its chain, which runs to each value of `iterations`
  (or 1) and is scored at every iteration.
- ``iterations`` (both modes, default settings): the main chain extended to N.

- ``seeds`` (every mode): each variant, and the main chain, is trained once per
  distillation seed (`umr.seeds`); the slices show the first seed's nodes and
  `Ablations.replicas` gives each one's replicates, which the tables and plots summarise.

The default value of every knob is always part of its values, so each knob's slice
through the defaults (what its table and plot show) exists in both modes. Values
a configuration cannot run are left out with a reason (`Ablations.skipped`), which
the tables print; an unknown reranker name is a configuration error.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Any

from umr.errors import ConfigError
from umr.lineage import DistillSpec, Node, RerankSpec
from umr.plan import Evaluation, default_distill, default_rerank, umr_chain
from umr.seeds import distill_seeds, with_seed


@dataclass(frozen=True)
class Knob:
    name: str  # key under `ablations`
    stage: str  # "rerank", "distill" or "chain"
    field: str  # RerankSpec / DistillSpec field it sets
    label: str  # axis / column label
    table: str | None = None  # table it feeds (the slice through the defaults)
    plot: str | None = None  # plot it feeds


KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("temperature", "distill", "temperature", "Temperature τ", table="table5", plot="temperature"),
    Knob("batch_size", "distill", "batch_size", "Batch size", table="table6", plot="batch_size"),
    Knob("in_batch_negatives", "distill", "in_batch_negatives", "In-batch negatives", table="table4"),
    Knob("passages_per_question", "distill", "passages_per_question", "Passages per question", plot="passages"),
    Knob("rerank_top_k", "rerank", "top_k", "Reranked top-k", plot="top_k"),
    Knob("reranker", "rerank", "reranker", "Reranker LM", plot="reranker"),
    Knob("iterations", "chain", "iterations", "Iteration", plot="iterations"),
)}
SETTING_KNOBS = tuple(k for k in KNOBS.values() if k.stage != "chain")


@dataclass(frozen=True)
class Variant:
    """One ablation node: its evaluation, the settings that differ, and what it feeds."""

    evaluation: Evaluation
    iteration: int
    settings: tuple[tuple[str, Any], ...]  # (knob, value) for every setting knob, defaults included
    changed: tuple[str, ...]  # knobs whose value differs from the default
    feeds: tuple[str, ...] = ()  # table ids and "plot:<id>"
    seed: int | None = None  # distillation seed (ablations.seeds; umr.distill.seed for the first replicate)

    def value(self, knob: str) -> Any:
        return dict(self.settings)[knob]


@dataclass(frozen=True)
class Ablations:
    mode: str
    task: str
    splits: tuple[str, ...]
    values: dict[str, tuple]  # knob -> values, default included, in the config's order
    defaults: dict[str, Any]
    variants: tuple[Variant, ...]
    reference: tuple[Evaluation, ...]  # the initial retriever on the ablation task (the plots' dashed line)
    skipped: dict[str, tuple[tuple[Any, str], ...]] = field(default_factory=dict)  # knob -> (value, reason)
    seeds: tuple[int, ...] = ()  # distillation seeds, umr.distill.seed first (umr.seeds)

    def primary(self) -> tuple[Variant, ...]:
        """The variants trained with the first seed (one per setting, iteration and split)."""
        return tuple(v for v in self.variants if v.seed == self.seeds[0])

    def replicas(self, variant: Variant) -> tuple[Evaluation, ...]:
        """`variant` under every seed, in seed order; () with a single seed."""
        if len(self.seeds) < 2:
            return ()
        same = {v.seed: v.evaluation for v in self.variants if v.iteration == variant.iteration
                and v.settings == variant.settings and v.evaluation.split == variant.evaluation.split}
        return tuple(same[s] for s in self.seeds if s in same)

    def slice(self, knob: str, split: str | None = None) -> list[Variant]:
        """Variants that change only `knob` (plus its default), at iteration 1 (iterations: every depth),
        trained with the first seed (`replicas` gives the others)."""
        split = split or self.splits[0]
        out = []
        for v in self.primary():
            if v.evaluation.split != split:
                continue
            if knob == "iterations":
                if not v.changed:
                    out.append(v)
            elif v.iteration == 1 and set(v.changed) <= {knob}:
                out.append(v)
        order = {value: i for i, value in enumerate(self.values[knob])}
        key = (lambda v: v.iteration) if knob == "iterations" else (lambda v: order.get(v.value(knob), len(order)))
        return sorted({v.evaluation: v for v in out}.values(), key=key)


def _defaults(config: dict) -> dict[str, Any]:
    rerank, distill = default_rerank(config), default_distill(config)
    out = {}
    for knob in SETTING_KNOBS:
        out[knob.name] = getattr(rerank if knob.stage == "rerank" else distill, knob.field)
    out["iterations"] = config["umr"]["iterations"]
    return out


def _values(config: dict, defaults: dict[str, Any]) -> dict[str, tuple]:
    section = config.get("ablations", {})
    values = {}
    for name in KNOBS:
        listed = list(section.get(name, []))
        if name == "iterations":
            values[name] = tuple(sorted(set(listed) | {defaults[name]}))
        elif defaults[name] in listed:
            values[name] = tuple(listed)
        else:
            values[name] = (defaults[name], *listed)
    return values


def _training_questions(config: dict, task: str) -> int | None:
    if config.get("benchmark") != "toy":
        return None  # real training sets are far larger than any batch
    toy = config.get("toy", {}).get("questions", {}).get(task, {})
    return toy["train"] * len(config["languages"]) if "train" in toy else None


def _check_rerankers(config: dict, values: tuple) -> None:
    models = config["models"]
    for name in values:
        if name not in models:
            raise ConfigError(f"config key 'ablations.reranker': model {name!r} is not defined under 'models' "
                              f"({', '.join(models)})")
        if models[name]["kind"] != "reranker":
            raise ConfigError(f"config key 'ablations.reranker': model {name!r} is a {models[name]['kind']}, not a reranker")


def _why_not(config: dict, task: str, rerank: RerankSpec, distill: DistillSpec) -> tuple[str, Any, str] | None:
    """(knob, value, reason) when these settings cannot run under `config`, else None."""
    if rerank.top_k > config["retrieval"]["top_k"]:
        return "rerank_top_k", rerank.top_k, f"top-k {rerank.top_k} > retrieval.top_k {config['retrieval']['top_k']}"
    if distill.passages_per_question > rerank.top_k:
        return ("passages_per_question", distill.passages_per_question,
                f"{distill.passages_per_question} passages per question > reranked top-k {rerank.top_k}")
    n_train = _training_questions(config, task)
    if n_train is not None and distill.batch_size > n_train:
        return "batch_size", distill.batch_size, f"batch size {distill.batch_size} > {n_train} training questions"
    return None


def _specs(config: dict, settings: dict[str, Any]) -> tuple[RerankSpec, DistillSpec]:
    rerank, distill = default_rerank(config), default_distill(config)
    rerank = replace(rerank, **{k.field: settings[k.name] for k in SETTING_KNOBS if k.stage == "rerank"})
    distill = replace(distill, **{k.field: settings[k.name] for k in SETTING_KNOBS if k.stage == "distill"})
    return rerank, distill


def _feeds(changed: tuple[str, ...], iteration: int) -> tuple[str, ...]:
    if iteration != 1 or len(changed) > 1:
        return ("ablations",)
    knobs = [KNOBS[c] for c in changed] if changed else list(SETTING_KNOBS)
    feeds = ["ablations"] + [k.table for k in knobs if k.table] + [f"plot:{k.plot}" for k in knobs if k.plot]
    return tuple(dict.fromkeys(feeds))


def plan(config: dict) -> Ablations:
    """The ablation variants of a (validated) configuration."""
    section = config.get("ablations", {})
    mode, task = section.get("mode", "one_at_a_time"), section.get("task", "xor_retrieve")
    splits = tuple(config["eval_splits"])
    seeds = distill_seeds(config)
    defaults = _defaults(config)
    values = _values(config, defaults)
    _check_rerankers(config, values["reranker"])
    root = Node(config["umr"]["retriever"])
    reference = tuple(Evaluation(task, root.path, split) for split in splits)
    if mode == "none":  # no variants: each knob's slice is the default (the main chain) alone
        values = {k: (defaults[k],) for k in KNOBS}

    settings_list: list[dict[str, Any]] = []
    depths: dict[int, list[dict[str, Any]]] = {}
    if mode == "one_at_a_time":
        for knob in SETTING_KNOBS:
            for value in values[knob.name]:
                settings_list.append({**{k.name: defaults[k.name] for k in SETTING_KNOBS}, knob.name: value})
        depths = {1: [dict(s) for s in settings_list]}
    elif mode == "grid":
        names = [k.name for k in SETTING_KNOBS]
        settings_list = [dict(zip(names, combo)) for combo in itertools.product(*(values[n] for n in names))]
        depths = {max(values["iterations"]) if section.get("iterations") else 1: settings_list}

    skipped: dict[str, dict[Any, str]] = {}
    variants: dict[Evaluation, Variant] = {}

    def add(node: Node, settings: dict[str, Any]) -> None:
        changed = tuple(k.name for k in SETTING_KNOBS if settings[k.name] != defaults[k.name])
        for split in splits:
            e = Evaluation(task, node.path, split)
            v = Variant(e, node.iteration, tuple((k.name, settings[k.name]) for k in SETTING_KNOBS), changed,
                        _feeds(changed, node.iteration), seed=node.steps[-1][1].seed)
            if e in variants:  # the same node reached twice (e.g. a default value): merge what it feeds
                v = replace(v, feeds=tuple(dict.fromkeys(variants[e].feeds + v.feeds)))
            variants[e] = v

    for depth, all_settings in depths.items():
        for settings in all_settings:
            rerank, distill = _specs(config, settings)
            problem = _why_not(config, task, rerank, distill)
            if problem:
                knob, value, reason = problem
                skipped.setdefault(knob, {})[value] = reason
                continue
            for seed in seeds:
                node = root
                for _ in range(depth):
                    node = node.child(rerank, replace(distill, seed=seed))
                    add(node, settings)

    # The main chain, extended to the longest `iterations` value, scored at every iteration (and seed).
    chain_settings = {k.name: defaults[k.name] for k in SETTING_KNOBS}
    longest = max(values["iterations"])
    extended = umr_chain({**config, "umr": {**config["umr"], "iterations": longest}})
    for seed in seeds:
        for node in extended[1:]:
            add(with_seed(node, seed), chain_settings)
    for e in list(variants):
        if not variants[e].changed:
            variants[e] = replace(variants[e], feeds=tuple(dict.fromkeys(variants[e].feeds + ("plot:iterations",))))
    return Ablations(mode, task, splits, values, defaults, tuple(variants.values()), reference,
                     {k: tuple(v.items()) for k, v in skipped.items()}, seeds)


def evaluations(config: dict) -> list[Evaluation]:
    """Extra evaluations the ablation grids need (the initial retriever's reference included);
    with mode none, only the main chain's seed replicates (if ablations.seeds has several)."""
    a = plan(config)
    if a.mode == "none" and len(a.seeds) < 2:
        return []
    return list(dict.fromkeys([*a.reference, *(v.evaluation for v in a.variants)]))
