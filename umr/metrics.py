"""Stage: collect every evaluation into one tidy `results/<dataset>/metrics.csv`.

Each evaluation file's path says what produced it (see `umr.lineage`), so the
system name, iteration and every setting are read off the path: the metrics
file is rebuilt from the evaluation outputs alone and is the single source for
tables and plots.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import asdict, fields
from pathlib import Path
from typing import Iterable, Sequence

from umr.errors import UMRError
from umr.io import atomic_file, log, run_cli
from umr.lineage import BM25_NODE, ContrastiveSpec, DistillSpec, GenQSpec, Node, RerankSpec

# mGenQ rows: `template` is the generation prompt, the DistillSpec columns hold the contrastive
# training's settings (temperature = τ, one passage per question, in-batch negatives), and
# `generator` the question-generating LM.
SETTING_COLUMNS = ("retriever", "reranker", "template", "aggregation", "rerank_top_k") + tuple(
    f.name for f in fields(DistillSpec)) + ("generator",)
MGENQ_SYSTEM = "mGenQ"
COLUMNS = ("system", "variant", "iteration", "reranked", "task", "split", "lang", "subset", "metric", "value", "count",
           *SETTING_COLUMNS, "node")


def _describe_mgenq(node: Node, final_rerank: RerankSpec | None,
                    default_genq: tuple[GenQSpec, ContrastiveSpec] | None) -> dict:
    """An mGenQ retriever (`<node>/genq-<tag>/ct-<tag>`): system mGenQ, settings from its tags."""
    generation, training = node.genq
    row = dict.fromkeys(SETTING_COLUMNS, "")
    row |= {"retriever": node.parent.path, "template": generation.template, "generator": generation.generator,
            "temperature": training.temperature, "batch_size": training.batch_size, "passages_per_question": 1,
            "in_batch_negatives": True, "epochs": training.epochs, "learning_rate": training.learning_rate,
            "warmup_steps": training.warmup_steps, "max_grad_norm": training.max_grad_norm, "seed": training.seed,
            "negate_teacher": False}
    if final_rerank:
        row |= {"reranker": final_rerank.reranker, "aggregation": final_rerank.aggregation,
                "rerank_top_k": final_rerank.top_k}
    changes: list[str] = []
    if default_genq is not None:
        renamed = {"temperature": "sampling_temperature", "seed": "generation_seed"}  # τ and training seed keep theirs
        changes += [f"{renamed.get(k, k)}={v}" for k, v in asdict(generation).items() if getattr(default_genq[0], k) != v]
        changes += [f"{k}={v}" for k, v in asdict(training).items() if getattr(default_genq[1], k) != v]
    if node.steps:
        changes.append(f"from={node.parent.path}")
    system = MGENQ_SYSTEM + (" + rerank" if final_rerank else "")
    return {"system": system, "variant": "; ".join(changes) or "default", "iteration": 0,
            "reranked": bool(final_rerank), **row}


def describe(task_relative: str, display: dict[str, str], default_rerank: RerankSpec | None,
             default_distill: DistillSpec | None,
             default_genq: tuple[GenQSpec, ContrastiveSpec] | None = None,
             report_rerank: RerankSpec | None = None) -> dict:
    """System, variant, iteration and settings of an evaluated node path (`<node>[/rr-<tag>]`).

    A variant is named by its differences from the defaults: `default_rerank` for the
    rerankings a node was trained from, `report_rerank` (else `default_rerank`) for a
    final "+ rerank"."""
    if task_relative.strip("/") == BM25_NODE:
        return {"system": "BM25", "variant": "default", "iteration": 0, "reranked": False,
                **dict.fromkeys(SETTING_COLUMNS, "")}
    parts = task_relative.strip("/").split("/")
    final_rerank = RerankSpec.parse(parts[-1]) if parts[-1].startswith(RerankSpec.PREFIX) else None
    node = Node.parse("/".join(parts[:-1] if final_rerank else parts))
    if node.genq is not None:
        return _describe_mgenq(node, final_rerank, default_genq)
    root_name = display.get(node.root, node.root)
    if node.iteration == 0:
        system = root_name
    elif any(d.negate_teacher for _, d in node.steps):
        system = "UMR (negated teacher)"
    else:
        system = "UMR"
    if final_rerank:
        system += " + rerank"
    row = dict.fromkeys(SETTING_COLUMNS, "")
    row["retriever"] = node.root
    rerank = final_rerank or (node.steps[-1][0] if node.steps else None)
    if rerank:
        row |= {"reranker": rerank.reranker, "template": rerank.template, "aggregation": rerank.aggregation,
                "rerank_top_k": rerank.top_k}
    if node.steps:
        row |= {k: v for k, v in asdict(node.steps[-1][1]).items()}
    changes: list[str] = []
    final = [(final_rerank, None, report_rerank or default_rerank)] if final_rerank else []
    for r, d, reference in [(r, d, default_rerank) for r, d in node.steps] + final:
        if reference and r != reference:
            changes += [f"{k}={v}" for k, v in asdict(r).items() if getattr(reference, k) != v]
        if default_distill and d is not None:
            # The seed is a replicate, not a variant (umr.seeds): it has its own column.
            changes += [f"{k}={v}" for k, v in asdict(d).items()
                        if getattr(default_distill, k) != v and k not in ("negate_teacher", "seed")]
    variant = "; ".join(dict.fromkeys(changes)) or "default"
    return {"system": system, "variant": variant, "iteration": node.iteration, "reranked": bool(final_rerank), **row}


def collect(eval_files: Sequence[str | Path], results_dir: str | Path, display: dict[str, str],
            default_rerank: RerankSpec | None = None, default_distill: DistillSpec | None = None,
            default_genq: tuple[GenQSpec, ContrastiveSpec] | None = None,
            report_rerank: RerankSpec | None = None) -> list[dict]:
    results_dir = Path(results_dir)
    rows = []
    for path in map(Path, eval_files):
        try:
            relative = path.relative_to(results_dir)
        except ValueError:
            raise UMRError(f"{path}: evaluation file is not under {results_dir}") from None
        # <task>/<node...>/eval/<split>.csv
        task, node_parts = relative.parts[0], relative.parts[1:-2]
        if relative.parts[-2] != "eval" or not node_parts:
            raise UMRError(f"{path}: not an evaluation output (<task>/<node>/eval/<split>.csv)")
        info = describe("/".join(node_parts), display, default_rerank, default_distill, default_genq, report_rerank)
        with open(path, encoding="utf-8", newline="") as handle:
            for rec in csv.DictReader(handle):
                if rec["task"] != task:
                    raise UMRError(f"{path}: task column {rec['task']!r} does not match its path ({task})")
                rows.append({**info, **{k: rec[k] for k in ("task", "split", "lang", "subset", "metric", "value", "count")},
                             "node": "/".join(node_parts)})
    return rows


def write_metrics(path: str | Path, rows: Iterable[dict]) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)


def parse_genq_tags(tags: str) -> tuple[GenQSpec, ContrastiveSpec]:
    """`genq-<tag>/ct-<tag>` -> (generation, training) settings."""
    generation, _, training = tags.strip("/").partition("/")
    try:
        return GenQSpec.parse(generation), ContrastiveSpec.parse(training)
    except ValueError as err:
        raise UMRError(f"--default-genq {tags!r}: {err}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.metrics", description="Collect evaluation files into metrics.csv.")
    p.add_argument("--results-dir", help="results/<dataset> (default: the folder of --out, results/<dataset>/metrics.csv)")
    p.add_argument("--evals", nargs="+", required=True, help="evaluation CSVs (<task>/<node>/eval/<split>.csv)")
    p.add_argument("--display", nargs="*", default=[], help="model display names, NAME=Display")
    p.add_argument("--default-rerank", help="tag of the default reranking (variants are named by their differences)")
    p.add_argument("--report-rerank", help="tag of the default final reranking, the \"+ rerank\" rows "
                   "(default: --default-rerank)")
    p.add_argument("--default-distill", help="tag of the default distillation")
    p.add_argument("--default-genq", help="tags of the default mGenQ generation and training (genq-<tag>/ct-<tag>)")
    p.add_argument("--out", required=True)
    return p


def _main(args: argparse.Namespace) -> None:
    display = dict(item.split("=", 1) for item in args.display)
    rows = collect(args.evals, args.results_dir or Path(args.out).parent, display,
                   RerankSpec.parse(args.default_rerank) if args.default_rerank else None,
                   DistillSpec.parse(args.default_distill) if args.default_distill else None,
                   parse_genq_tags(args.default_genq) if args.default_genq else None,
                   RerankSpec.parse(args.report_rerank) if args.report_rerank else None)
    write_metrics(args.out, rows)
    log.info("wrote %s (%d rows from %d evaluations)", args.out, len(rows), len(args.evals))


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
