"""Ablation plots: R@2kt / R@5kt against one knob, one line per language plus the average.

(With `ablations.task` xor_full: top-1/5/20 answer presence of all questions.)

Each plot (`PLOTS`) follows one knob of the ablation grid (`umr.ablations`):
its slice through the defaults, the initial retriever as a dashed reference
line, percent on the y axis. Built from metrics rows like the tables: the rule
collects the evaluation files of its points with `umr.metrics.collect`.

By hand: `python -m umr.plots --config config.yaml --metrics results/toy/metrics.csv
--plot temperature --out-dir results/toy/plots`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from umr import ablations as ablations_mod
from umr.errors import UMRError
from umr.io import atomic_file, log, run_cli
from umr.languages import language_name
from umr.plan import Evaluation
from umr.seeds import Stat

PLOTS = {  # plot id -> (knob, x-axis label, x scale)
    "temperature": ("temperature", "Teacher temperature τ (log scale)", "log"),
    "batch_size": ("batch_size", "Batch size (questions per step, log scale)", "log2"),
    "iterations": ("iterations", "UMR iteration (0 = initial retriever)", "linear"),
    "top_k": ("rerank_top_k", "Reranked top-k (passages per training question)", "linear"),
    "passages": ("passages_per_question", "Passages per question in distillation", "linear"),
    "reranker": ("reranker", "Reranker LM", "category"),
}
METRICS = {"xor_retrieve": ("R@2kt", "R@5kt"), "xor_full": ("Top-1", "Top-5", "Top-20")}  # by ablations.task
_TASK_NAMES = {"xor_retrieve": "XOR-Retrieve", "xor_full": "XOR-Full"}


@dataclass(frozen=True)
class PlotSpec:
    id: str
    knob: str
    title: str
    xlabel: str
    xscale: str
    task: str
    split: str
    languages: tuple[str, ...]
    points: tuple[tuple[str, str], ...]  # (x value as text, node)
    reference: str  # the initial retriever's node
    reference_label: str
    default: str  # x of the default setting
    metrics: tuple[str, ...] = METRICS["xor_retrieve"]
    notes: tuple[str, ...] = ()
    # Per point, its node under every distillation seed (ablations.seeds), or () for one run. The
    # iteration plot has none: it is the default target's, which trains one seed.
    replicas: tuple[tuple[str, ...], ...] = ()
    evaluations: tuple[Evaluation, ...] = field(default=(), compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("evaluations")
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PlotSpec":
        data = json.loads(text)
        data["points"] = tuple(tuple(p) for p in data["points"])
        data["replicas"] = tuple(tuple(r) for r in data["replicas"])
        for key in ("languages", "metrics", "notes"):
            data[key] = tuple(data[key])
        return cls(**data)


def _x(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def plot_spec(config: dict, plot_id: str) -> PlotSpec:
    """What plot `plot_id` shows under `config`, with its input evaluations."""
    if plot_id not in PLOTS:
        raise UMRError(f"unknown plot {plot_id!r} (known: {', '.join(PLOTS)})")
    knob, xlabel, xscale = PLOTS[plot_id]
    plan = ablations_mod.plan(config)
    split = plan.splits[0]
    reference = plan.reference[0]
    models = config["models"]
    initial = models.get(reference.node, {}).get("display", reference.node)
    replicas: tuple[tuple[str, ...], ...] = ()
    if knob == "iterations":
        points = [("0", reference.node)] + [(str(v.iteration), v.evaluation.node) for v in plan.slice(knob, split)]
        default = str(plan.defaults["iterations"])
    else:
        points = [(_x(v.value(knob)), v.evaluation.node) for v in plan.slice(knob, split)]
        default = _x(plan.defaults[knob])
        if len(plan.seeds) > 1:
            replicas = tuple(tuple(e.node for e in plan.replicas(v)) for v in plan.slice(knob, split))
    if knob == "reranker":
        points = [(models[name].get("display", name) if name in models else name, node) for name, node in points]
        default = models.get(default, {}).get("display", default)
    notes = tuple(f"not run: {knob} = {value} ({reason})" for value, reason in plan.skipped.get(knob, ()))
    title = f"UMR: {ablations_mod.KNOBS[knob].label} on {_TASK_NAMES[plan.task]} {split} ({config['dataset']})"
    nodes = [n for i in range(len(points)) for n in _point_nodes(points, replicas, i)]
    evals = tuple(dict.fromkeys([reference] + [Evaluation(plan.task, node, split) for node in nodes]))
    if replicas:
        notes += (f"mean ± sd over {len(plan.seeds)} distillation seeds",)
    return PlotSpec(plot_id, knob, title, xlabel, xscale, plan.task, split, tuple(config["languages"]),
                    tuple(points), reference.node, f"{initial} (initial retriever), average", default,
                    metrics=METRICS[plan.task], notes=notes, replicas=replicas, evaluations=evals)


def default_plots(config: dict) -> list[str]:
    """Plots of the knobs that vary in this configuration (iterations: always, from 0 to N)."""
    if config.get("ablations", {}).get("mode", "one_at_a_time") == "none":
        return ["iterations"]
    return [p for p in PLOTS if len(plot_spec(config, p).points) >= 2]


def _point_nodes(points, replicas, i: int) -> tuple[str, ...]:
    """The nodes of point i: its seed replicates, or its one node."""
    return tuple(replicas[i]) if replicas and replicas[i] else (points[i][1],)


def replicate_values(spec: PlotSpec, metric_rows) -> dict[str, dict[str, list[list[float]]]]:
    """metric -> line ("avg" or a language) -> at each point, the values of its replicates (one without seeds)."""
    from umr.tables import index_rows

    by_node, _ = index_rows(metric_rows)
    out: dict[str, dict[str, list[list[float]]]] = {}
    for metric in spec.metrics:
        out[metric] = {}
        for lang in (*spec.languages, "avg"):
            points = []
            for i in range(len(spec.points)):
                found = [by_node.get((spec.task, spec.split, node), {}).get(("all", metric, lang))
                         for node in _point_nodes(spec.points, spec.replicas, i)]
                points.append([v for v in found if v is not None])
            out[metric][lang] = points
    return out


def series(spec: PlotSpec, metric_rows) -> dict[str, dict[str, list[float | None]]]:
    """metric -> line ("avg" or a language) -> values at spec.points (the mean over seeds; None where missing)."""
    return _means(replicate_values(spec, metric_rows))


def _means(values: dict[str, dict[str, list[list[float]]]]) -> dict[str, dict[str, list[float | None]]]:
    return {metric: {lang: [Stat.of(v).mean if v else None for v in points] for lang, points in lines.items()}
            for metric, lines in values.items()}


def reference_values(spec: PlotSpec, metric_rows) -> dict[str, float | None]:
    from umr.tables import index_rows

    by_node, _ = index_rows(metric_rows)
    scores = by_node.get((spec.task, spec.split, spec.reference), {})
    return {m: scores.get(("all", m, "avg")) for m in spec.metrics}


def draw(spec: PlotSpec, metric_rows, png: str | Path, pdf: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values, ref = replicate_values(spec, metric_rows), reference_values(spec, metric_rows)
    data = _means(values)
    seeds = values if spec.replicas else None
    xs_text = [x for x, _ in spec.points]
    if spec.xscale == "category" or spec.knob == "iterations":
        xs = list(range(len(xs_text))) if spec.xscale == "category" else [float(x) for x in xs_text]
    else:
        xs = [float(x) for x in xs_text]
    order = sorted(range(len(xs)), key=xs.__getitem__)
    fig, axes = plt.subplots(1, len(spec.metrics), figsize=(5.2 * len(spec.metrics) + 2.6, 4.4), squeeze=False,
                             layout="constrained")
    cmap = plt.get_cmap("tab10")
    for ax, metric in zip(axes[0], spec.metrics):
        for i, lang in enumerate(spec.languages):
            ys = data[metric][lang]
            pts = [(xs[j], ys[j]) for j in order if ys[j] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", markersize=3.5, linewidth=1.0, alpha=0.75, color=cmap(i % 10),
                        label=f"{language_name(lang)} ({lang})")
        pts = [(xs[j], data[metric]["avg"][j]) for j in order if data[metric]["avg"][j] is not None]
        if pts and seeds is not None:  # the spread: mean ± sd of the average, and each seed's own average
            avg = seeds[metric]["avg"]
            sd = [Stat.of(avg[j]).sd or 0.0 for j in order if data[metric]["avg"][j] is not None]
            ax.errorbar(*zip(*pts), yerr=sd, marker="s", markersize=6, linewidth=2.6, capsize=4, color="black",
                        label="Average (mean ± sd over seeds)", zorder=5)
            ax.scatter([xs[j] for j in order for _ in avg[j]], [v for j in order for v in avg[j]], s=14,
                       facecolors="none", edgecolors="black", linewidths=0.8, label="Average, one seed", zorder=5)
        elif pts:
            ax.plot(*zip(*pts), marker="s", markersize=6, linewidth=2.6, color="black", label="Average", zorder=5)
        if ref[metric] is not None:  # on top (drawn dashed), so a curve at the same height never hides it
            ax.axhline(ref[metric], linestyle="--", linewidth=1.4, color="0.45", label=spec.reference_label, zorder=6)
        if spec.xscale == "log":
            ax.set_xscale("log")
        elif spec.xscale == "log2":
            ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels(xs_text)
        ax.minorticks_off()
        if spec.default in xs_text:
            ax.axvline(xs[xs_text.index(spec.default)], color="tab:blue", alpha=0.12, linewidth=8, zorder=0)
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(f"{metric} (%)")
        ax.set_title(metric + ("" if ref[metric] is None else f"   (dashed: initial retriever, {ref[metric]:.1f})"),
                     fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8, frameon=False)
    subtitle = "shaded: default setting" + ("; " + "; ".join(spec.notes) if spec.notes else "")
    fig.suptitle(f"{spec.title}\n{subtitle}", fontsize=10)
    for path in (png, pdf):
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=150)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.plots", description="Draw one ablation plot (PNG + PDF).")
    p.add_argument("--plot", required=True, choices=tuple(PLOTS))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--spec", help="the plot's spec as JSON (what the Snakemake rule passes)")
    what.add_argument("--config", help="a config file: the spec is derived from it")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--metrics", help="a metrics.csv")
    source.add_argument("--evals", nargs="*", help="evaluation CSVs (<results-dir>/<task>/<node>/eval/<split>.csv)")
    p.add_argument("--results-dir", help="results/<dataset> (with --evals; default: read off their paths)")
    p.add_argument("--display", nargs="*", default=[], help="model display names, NAME=Display (with --evals)")
    p.add_argument("--out-png")
    p.add_argument("--out-pdf")
    p.add_argument("--out-dir", help="write <out-dir>/<plot>.png and .pdf")
    return p


def _main(args: argparse.Namespace) -> None:
    from umr.tables import collect_rows, read_metrics

    if args.spec:
        spec = PlotSpec.from_json(args.spec)
    else:
        from umr.config import load_config

        spec = plot_spec(load_config(args.config), args.plot)
    if spec.id != args.plot:
        raise UMRError(f"--spec is for {spec.id}, not {args.plot}")
    if args.metrics:
        rows = read_metrics(args.metrics)
    else:
        rows = collect_rows(args.evals, args.results_dir, args.display, None, None)
    outs = [args.out_png, args.out_pdf]
    if args.out_dir:
        outs = [str(Path(args.out_dir) / f"{args.plot}.{ext}") for ext in ("png", "pdf")]
    if not all(outs):
        raise UMRError("give --out-dir, or both --out-png and --out-pdf")
    draw(spec, rows, *outs)
    log.info("wrote %s", ", ".join(outs))


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
