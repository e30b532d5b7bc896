"""Lineage paths: where every retriever, run and score lives, and what produced it.

A retriever's directory sits inside its parent's, so the path of any output says
how it was made and iteration = depth:

    results/<dataset>/<task>/<root>/                      the initial retriever (iteration 0)
        index/ runs/ eval/
        rr-<reranker>_<template>_<aggregation>_k<K>/      its top-K reranked by an LM
            runs/ eval/
            kd-t<τ>_b<b>_n<n>_<ibn|noibn>_e<E>_lr<lr>_w<W>_g<G>_s<seed>[_gs<scale>][_sq][_best-v<V>-h<H>]/
                                                              distilled: iteration 1
                retriever/ index/ runs/ eval/ rr-.../kd-.../      iteration 2 ...

The mGenQ baseline (`umr.baselines.mgenq`) hangs off a retriever node too, the
initial one in the plan: ``<node>/genq-<tag>/`` holds the questions generated with
one LM, prompt and sampling seed, and ``<node>/genq-<tag>/ct-<tag>/`` the retriever
contrastively trained on them from ``<node>``'s checkpoint (a retriever node like any
other: retriever/ index/ runs/ eval/).

Every setting that changes a result is in a tag, and a tag parses back into its
settings, so two variants that differ only in distillation share the parent's
index, retrieval and reranking files, and a rule can rebuild any node from its
path alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

NAME = r"[A-Za-z0-9][A-Za-z0-9.\-]*"  # model names: no '_' (tag separator) and no '/'
_TEMPLATE = r"[a-z]+"


def _num(x: float) -> str:
    """Compact, round-trippable number: 0.1 -> '0.1', 2e-05 -> '2e-05', 10.0 -> '10'."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True)
class RerankSpec:
    reranker: str
    template: str = "official"
    aggregation: str = "mean"
    top_k: int = 100

    PREFIX = "rr-"
    PATTERN = re.compile(rf"rr-({NAME})_({_TEMPLATE})_(mean|sum)_k([0-9]+)")

    @property
    def tag(self) -> str:
        return f"rr-{self.reranker}_{self.template}_{self.aggregation}_k{self.top_k}"

    @classmethod
    def parse(cls, tag: str) -> "RerankSpec":
        m = cls.PATTERN.fullmatch(tag)
        if not m:
            raise ValueError(f"not a rerank tag: {tag!r}")
        return cls(m.group(1), m.group(2), m.group(3), int(m.group(4)))


@dataclass(frozen=True)
class DistillSpec:
    """Distillation settings. The last four select official-code behaviours (docs/deviations.md);
    at their defaults they add nothing to the tag, so older paths keep their names."""

    temperature: float = 0.1
    batch_size: int = 16
    passages_per_question: int = 16
    in_batch_negatives: bool = True
    epochs: int = 10
    learning_rate: float = 2e-5
    warmup_steps: int = 1237
    max_grad_norm: float = 2.0
    seed: int = 12345
    negate_teacher: bool = False
    grad_scale: float = 1.0  # gradients multiplied by this before clipping (official grad cache: 1/8)
    strip_question_mark: bool = False  # training questions lose a trailing "?" (official normalize_question)
    keep: str = "final"  # or "best_val_rank": the epoch's weights with the best unsupervised validation rank
    val_questions: int = 0  # best_val_rank: training questions held out for validation
    val_hard_negatives: int = 30  # best_val_rank: reranked passages after the teacher's top one

    KEEP = ("final", "best_val_rank")
    PREFIX = "kd-"
    _F = r"[0-9.e+\-]+"
    PATTERN = re.compile(rf"kd-t({_F})_b([0-9]+)_n([0-9]+)_(ibn|noibn)_e([0-9]+)_lr({_F})_w([0-9]+)_g({_F})_s([0-9]+)"
                         rf"(?:_gs({_F}))?(_sq)?(?:_best-v([0-9]+)-h([0-9]+))?(_neg)?")

    def __post_init__(self):
        if self.keep not in self.KEEP:
            raise ValueError(f"keep must be one of {', '.join(self.KEEP)}, got {self.keep!r}")

    @property
    def tag(self) -> str:
        tag = (f"kd-t{_num(self.temperature)}_b{self.batch_size}_n{self.passages_per_question}_"
               f"{'ibn' if self.in_batch_negatives else 'noibn'}_e{self.epochs}_lr{_num(self.learning_rate)}_"
               f"w{self.warmup_steps}_g{_num(self.max_grad_norm)}_s{self.seed}")
        if self.grad_scale != 1.0:
            tag += f"_gs{_num(self.grad_scale)}"
        if self.strip_question_mark:
            tag += "_sq"
        if self.keep == "best_val_rank":
            tag += f"_best-v{self.val_questions}-h{self.val_hard_negatives}"
        return tag + ("_neg" if self.negate_teacher else "")

    @classmethod
    def parse(cls, tag: str) -> "DistillSpec":
        m = cls.PATTERN.fullmatch(tag)
        if not m:
            raise ValueError(f"not a distillation tag: {tag!r}")
        t, b, n, ibn, e, lr, w, g, s, gs, sq, vq, vh, neg = m.groups()
        best = {"keep": "best_val_rank", "val_questions": int(vq),
                "val_hard_negatives": int(vh)} if vq is not None else {}
        return cls(float(t), int(b), int(n), ibn == "ibn", int(e), float(lr), int(w), float(g), int(s), neg is not None,
                   grad_scale=float(gs) if gs is not None else 1.0, strip_question_mark=sq is not None, **best)


@dataclass(frozen=True)
class GenQSpec:
    """mGenQ question generation: what changes the generated questions.

    `template` is a prompt name of `umr.baselines.prompts`, or custom-<hash> of a
    configured format string (`umr.baselines.prompts.template_key`). Batch sizes and
    input truncation are not in the tag: every question is sampled with its own seeded
    generator, so batching does not change it (up to floating-point noise).
    """

    generator: str
    template: str = "instruction-first"
    top_p: float = 0.95
    temperature: float = 1.0
    max_new_tokens: int = 32
    seed: int = 12345

    PREFIX = "genq-"
    _F = r"[0-9.e+\-]+"
    PATTERN = re.compile(rf"genq-({NAME})_([a-z][a-z0-9-]*)_p({_F})_t({_F})_m([0-9]+)_s([0-9]+)")

    @property
    def tag(self) -> str:
        return (f"genq-{self.generator}_{self.template}_p{_num(self.top_p)}_t{_num(self.temperature)}_"
                f"m{self.max_new_tokens}_s{self.seed}")

    @classmethod
    def parse(cls, tag: str) -> "GenQSpec":
        m = cls.PATTERN.fullmatch(tag)
        if not m:
            raise ValueError(f"not a question-generation tag: {tag!r}")
        g, template, p, t, n, s = m.groups()
        return cls(g, template, float(p), float(t), int(n), int(s))


@dataclass(frozen=True)
class ContrastiveSpec:
    """mGenQ retriever training: DPR's loss over in-batch negatives (scores / τ; τ = 1 is DPR)."""

    temperature: float = 1.0
    batch_size: int = 16
    epochs: int = 3
    learning_rate: float = 1e-4
    warmup_steps: int = 10
    max_grad_norm: float = 2.0
    seed: int = 12345

    PREFIX = "ct-"
    _F = r"[0-9.e+\-]+"
    PATTERN = re.compile(rf"ct-t({_F})_b([0-9]+)_e([0-9]+)_lr({_F})_w([0-9]+)_g({_F})_s([0-9]+)")

    @property
    def tag(self) -> str:
        return (f"ct-t{_num(self.temperature)}_b{self.batch_size}_e{self.epochs}_lr{_num(self.learning_rate)}_"
                f"w{self.warmup_steps}_g{_num(self.max_grad_norm)}_s{self.seed}")

    @classmethod
    def parse(cls, tag: str) -> "ContrastiveSpec":
        m = cls.PATTERN.fullmatch(tag)
        if not m:
            raise ValueError(f"not a contrastive-training tag: {tag!r}")
        t, b, e, lr, w, g, s = m.groups()
        return cls(float(t), int(b), int(e), float(lr), int(w), float(g), int(s))


# The BM25 baseline's node (not a dense retriever: no retriever/, index/ of embeddings).
BM25_NODE = "baselines/bm25"

# Wildcard constraints: a retriever node is a root plus (rerank, distill) pairs, optionally
# ending in an mGenQ retriever trained from there (generation, training).
UMR_NODE = rf"{NAME}(?:/rr-[^/]+/kd-[^/]+)*"
RETRIEVER_NODE = rf"{UMR_NODE}(?:/genq-[^/]+/ct-[^/]+)?"
RERANK_NODE = rf"{RETRIEVER_NODE}/rr-[^/]+"
DISTILL_NODE = rf"{RETRIEVER_NODE}/rr-[^/]+/kd-[^/]+"
GENQ_TAG = r"genq-[^/]+"
CONTRASTIVE_TAG = r"ct-[^/]+"


@dataclass(frozen=True)
class Node:
    """A retriever node: its root, the (rerank, distill) steps that led to it and, for an
    mGenQ retriever, the (generation, training) settings it was trained with from there."""

    root: str
    steps: tuple[tuple[RerankSpec, DistillSpec], ...] = ()
    genq: tuple[GenQSpec, ContrastiveSpec] | None = None

    @property
    def path(self) -> str:
        parts = [self.root] + [f"{r.tag}/{d.tag}" for r, d in self.steps]
        if self.genq is not None:
            parts.append(f"{self.genq[0].tag}/{self.genq[1].tag}")
        return "/".join(parts)

    @property
    def iteration(self) -> int:
        return len(self.steps)

    def child(self, rerank: RerankSpec, distill: DistillSpec) -> "Node":
        if self.genq is not None:
            raise ValueError(f"{self.path}: an mGenQ retriever has no UMR iterations in the lineage")
        return replace(self, steps=self.steps + ((rerank, distill),))

    def with_genq(self, generation: GenQSpec, training: ContrastiveSpec) -> "Node":
        """The mGenQ retriever trained from this node's checkpoint."""
        if self.genq is not None:
            raise ValueError(f"{self.path} is already an mGenQ retriever")
        return replace(self, genq=(generation, training))

    def genq_dir(self) -> str:
        """`<parent>/genq-<tag>`: where an mGenQ node's generated questions live."""
        if self.genq is None:
            raise ValueError(f"{self.path} is not an mGenQ retriever")
        return f"{self.parent.path}/{self.genq[0].tag}"

    def reranked(self, rerank: RerankSpec) -> str:
        return f"{self.path}/{rerank.tag}"

    @property
    def parent(self) -> "Node":
        if self.genq is not None:
            return replace(self, genq=None)
        if not self.steps:
            raise ValueError(f"{self.path} is a root: it has no parent")
        return replace(self, steps=self.steps[:-1])

    @classmethod
    def parse(cls, path: str) -> "Node":
        parts = path.strip("/").split("/")
        genq = None
        if len(parts) >= 3 and parts[-2].startswith(GenQSpec.PREFIX):
            genq = (GenQSpec.parse(parts[-2]), ContrastiveSpec.parse(parts[-1]))
            parts = parts[:-2]
        if len(parts) % 2 != 1 or not re.fullmatch(NAME, parts[0]):
            raise ValueError(f"not a retriever node path: {path!r}")
        steps = tuple((RerankSpec.parse(parts[i]), DistillSpec.parse(parts[i + 1])) for i in range(1, len(parts), 2))
        return cls(parts[0], steps, genq)


def split_rerank_node(path: str) -> tuple[Node, RerankSpec]:
    """`<node>/rr-<tag>` -> (retriever node, rerank settings)."""
    node, _, tag = path.rstrip("/").rpartition("/")
    return Node.parse(node), RerankSpec.parse(tag)


def score_cache_sources(node: Node, rerank: RerankSpec, default: RerankSpec | None = None) -> list[str]:
    """Rerank nodes whose scores a new reranking of `node` with `rerank` can reuse.

    A score depends only on (question, passage, LM, template, aggregation); top-k
    only decides which pairs get scored. So the same settings at every ancestor
    qualify, and at this node the default reranking when it has the same LM settings
    and a larger top-k (it is always computed, since the main lineage needs it).
    """
    sources = []
    current = node
    while current.steps:
        current = current.parent
        sources.append(current.reranked(rerank))
    if (default is not None and default != rerank and default.top_k > rerank.top_k
            and replace(default, top_k=rerank.top_k) == rerank):
        sources.append(node.reranked(default))
    return sources
