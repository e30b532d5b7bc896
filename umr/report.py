"""Paths and input functions of the report stage (rules/report.smk), kept out of the rule file.

Tables (`umr.tables`) and plots (`umr.plots`) live under `results/<dataset>/tables/` and
`results/<dataset>/plots/`; each table or plot rule takes as input only the evaluation
files of its rows or points. Supervised systems' runs supplied by the user (config
`supervised`, `umr.supplied`) are scored by rule `evaluate_supplied`.
"""

from __future__ import annotations

from typing import Callable

from umr.plan import Evaluation
from umr.supplied import is_json

TABLE_FORMATS = ("md", "csv", "tex", "html")  # the report shows the HTML page
PLOT_FORMATS = ("png", "pdf")


def evaluation_path(results: str, evaluation: Evaluation) -> str:
    return f"{results}/{evaluation.task}/{evaluation.node}/eval/{evaluation.split}.csv"


def table_files(results: str, table_id: str) -> list[str]:
    return [f"{results}/tables/{table_id}.{ext}" for ext in TABLE_FORMATS]


def plot_files(results: str, plot_id: str) -> list[str]:
    return [f"{results}/plots/{plot_id}.{ext}" for ext in PLOT_FORMATS]


def report_files(config: dict, results: str, target: str = "all") -> list[str]:
    """The tables and plots a target builds: every table, and the plot of every knob this
    configuration varies, split by what they read. `all` gets those that need only the method
    and its baselines (Tables 1, 2, 3, 7 and the iteration plot on the default grids);
    `ablations` gets those that need a grid variant or a seed replicate (Tables 4-6, the
    ablation table, the τ / batch-size plots, the seeds table), so the default run never
    trains a variant or a second seed."""
    from umr.plots import default_plots, plot_spec
    from umr.plan import main_evaluations
    from umr.tables import TABLES, table_spec

    if target not in ("all", "ablations"):
        raise ValueError(f"unknown report target {target!r} (all, ablations)")
    main = set(main_evaluations(config))

    def wanted(evals) -> bool:
        return (set(evals) <= main) == (target == "all")

    specs = {table_id: table_spec(config, table_id) for table_id in TABLES}
    # The seeds table exists only with several seeds (else it would repeat Table 3).
    tables = [f for table_id, spec in specs.items() if wanted(spec.evaluations)
              and not (table_id == "seeds" and spec.kind == "absent") for f in table_files(results, table_id)]
    return tables + [f for plot_id in default_plots(config) if wanted(plot_spec(config, plot_id).evaluations)
                     for f in plot_files(results, plot_id)]


def supplied_runs(config: dict, wildcards) -> list[str]:
    """The run file(s) given under `supervised.<name>.<task>.<split>`."""
    try:
        runs = config["supervised"][wildcards.name][wildcards.task][wildcards.split]
    except KeyError:
        raise ValueError(f"no supplied run for {wildcards.name} on {wildcards.task} {wildcards.split} "
                         "(config key supervised)") from None
    return [runs] if isinstance(runs, str) else list(runs)


def supplied_corpus(config: dict, wildcards, corpus_file: Callable[[str], str],
                    offsets_file: Callable[[str], str]) -> dict[str, str]:
    """A TREC run's passage ids refer to the task's corpus; a prediction JSON carries the texts."""
    if is_json(supplied_runs(config, wildcards)):
        return {}
    return {"corpus": corpus_file(wildcards.task), "offsets": offsets_file(wildcards.task)}


def supplied_corpus_options(input) -> str:
    return f"--corpus {input.corpus} --corpus-offsets {input.offsets}" if "corpus" in input.keys() else ""
