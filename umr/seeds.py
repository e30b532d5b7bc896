"""Seed replicates: the UMR lineage trained once per distillation seed, and their summary.

`ablations.seeds` lists distillation seeds; `umr.distill.seed` is always the first. A
replicate of a lineage node is the same path with every distillation step's seed
replaced (`kd-..._s<seed>`), so replicates share everything upstream of their first
distillation: the initial retriever's index, retrieval and reranking. Nodes without a
distillation step (the initial retriever, BM25, mGenQ) have no replicates: nothing in
them depends on the distillation seed.

The tables (`umr.tables`) show a replicated row as mean ± sample standard deviation
with its n; the metrics files keep one row per seed (column `seed`). `gain_test` is the
criterion the toy's claim rests on: every seed's retriever above the initial one, and
the mean gain at least twice its standard error.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from umr.lineage import BM25_NODE, Node, RerankSpec


def distill_seeds(config: dict) -> tuple[int, ...]:
    """umr.distill.seed, then the other seeds of ablations.seeds, in the config's order."""
    primary = config["umr"]["distill"]["seed"]
    return tuple(dict.fromkeys([primary, *config.get("ablations", {}).get("seeds", [])]))


def with_seed(node: Node, seed: int) -> Node:
    """`node` with every distillation step trained with `seed` (reranking settings unchanged)."""
    return replace(node, steps=tuple((r, replace(d, seed=seed)) for r, d in node.steps))


def lineage_node(path: str) -> tuple[Node, str | None] | None:
    """(retriever node, final rerank tag or None) of an evaluated path; None for BM25."""
    if path.strip("/") == BM25_NODE:
        return None
    parts = path.strip("/").split("/")
    final = parts[-1] if parts[-1].startswith(RerankSpec.PREFIX) else None
    return Node.parse("/".join(parts[:-1] if final else parts)), final


def replicate_path(path: str, seeds: tuple[int, ...]) -> tuple[str, ...]:
    """A node path (`<node>` or `<node>/rr-<tag>`) under each seed, in order; () when nothing
    in it depends on the distillation seed (BM25, no distillation step, an mGenQ retriever)."""
    parsed = lineage_node(path)
    if parsed is None or len(seeds) < 2:
        return ()
    node, final = parsed
    if not node.steps or node.genq is not None:
        return ()
    return tuple(with_seed(node, s).path + (f"/{final}" if final else "") for s in seeds)


@dataclass(frozen=True)
class Stat:
    """Replicates of one score: mean, sample standard deviation (None for n = 1) and n."""

    mean: float
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Stat":
        if not values:
            raise ValueError("no values to summarise")
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))

    @property
    def se(self) -> float | None:
        return None if self.sd is None else self.sd / math.sqrt(self.n)


@dataclass(frozen=True)
class GainTest:
    """Per-seed gains of a replicated system over a reference (points), and the criterion."""

    gains: tuple[float, ...]

    @property
    def stat(self) -> Stat:
        return Stat.of(list(self.gains))

    @property
    def every_seed_above(self) -> bool:
        return all(g > 0 for g in self.gains)

    @property
    def mean_over_two_se(self) -> bool:
        """Mean gain >= 2 standard errors (needs n >= 2; zero spread passes when the mean is positive)."""
        s = self.stat
        return s.n >= 2 and s.mean > 0 and s.mean >= 2 * (s.se or 0.0)

    @property
    def holds(self) -> bool:
        return self.every_seed_above and self.mean_over_two_se

    def describe(self, precision: int = 2) -> str:
        s = self.stat
        se = "–" if s.se is None else f"{s.se:.{precision}f}"
        return (f"{s.mean:+.{precision}f} (SE {se}, n = {s.n}; per seed "
                + ", ".join(f"{g:+.{precision}f}" for g in self.gains)
                + f"); every seed above: {'yes' if self.every_seed_above else 'no'}; "
                f"mean ≥ 2 SE: {'yes' if self.mean_over_two_se else 'no'}")


def gain_test(replicate_scores: list[float | None], reference: float) -> GainTest | None:
    """The gains of replicates over a reference score; None if any replicate has no score."""
    if not replicate_scores or any(v is None for v in replicate_scores):
        return None
    return GainTest(tuple(v - reference for v in replicate_scores))
