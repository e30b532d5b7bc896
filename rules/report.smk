# Stage: report. The paper's tables (Markdown, CSV, LaTeX) and the ablation plots (PNG, PDF),
# one rule each, so `snakemake results/<dataset>/tables/table5.md` runs only what Table 5
# needs: a table's inputs are the evaluation files of its rows, not metrics.csv (which
# depends on everything); it collects them with the same code as `rule metrics`.
# `snakemake --report report.html` bundles them with the captions under report/.
from umr.plots import PLOTS, default_plots, plot_spec
from umr.tables import TABLES, table_spec


report: "../report/workflow.rst"


def evaluation_path(evaluation):
    return f"{RESULTS}/{evaluation.task}/{evaluation.node}/eval/{evaluation.split}.csv"


def table_files(table_id):
    return [f"{RESULTS}/tables/{table_id}.{ext}" for ext in ("md", "csv", "tex")]


def plot_files(plot_id):
    return [f"{RESULTS}/plots/{plot_id}.{ext}" for ext in ("png", "pdf")]


def report_targets():
    """Every table, and the plot of every knob this configuration varies (rules/common.smk: final_targets)."""
    tables = [f for table_id in TABLES for f in table_files(table_id)]
    return tables + [f for plot_id in default_plots(config) for f in plot_files(plot_id)]


for table_id in TABLES:
    spec = table_spec(config, table_id)

    rule:
        name:
            f"table_{table_id}"
        input:
            [evaluation_path(e) for e in spec.evaluations],
        output:
            md=report(
                f"results/{{dataset}}/tables/{table_id}.md",
                caption=f"../report/{table_id}.rst",
                category="Tables",
                labels={"table": table_id, "format": "Markdown"},
            ),
            csv=f"results/{{dataset}}/tables/{table_id}.csv",
            tex=f"results/{{dataset}}/tables/{table_id}.tex",
        params:
            table=table_id,
            spec=spec.to_json(),
            results_dir=RESULTS,
            display=display_names(),
            default_rerank=default_rerank(config).tag,
            default_distill=default_distill(config).tag,
        log:
            f"results/{{dataset}}/logs/tables/{table_id}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.tables --table {params.table} --spec {params.spec:q} --evals {input} "
            "--results-dir {params.results_dir} --display {params.display:q} "
            "--default-rerank {params.default_rerank} --default-distill {params.default_distill} "
            "--out-md {output.md} --out-csv {output.csv} --out-tex {output.tex} > {log} 2>&1"


for plot_id in PLOTS:
    spec = plot_spec(config, plot_id)

    rule:
        name:
            f"plot_{plot_id}"
        input:
            [evaluation_path(e) for e in spec.evaluations],
        output:
            png=report(
                f"results/{{dataset}}/plots/{plot_id}.png",
                caption=f"../report/plot_{plot_id}.rst",
                category="Plots",
                labels={"plot": plot_id},
            ),
            pdf=f"results/{{dataset}}/plots/{plot_id}.pdf",
        params:
            plot=plot_id,
            spec=spec.to_json(),
            results_dir=RESULTS,
            display=display_names(),
        log:
            f"results/{{dataset}}/logs/plots/{plot_id}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.plots --plot {params.plot} --spec {params.spec:q} --evals {input} "
            "--results-dir {params.results_dir} --display {params.display:q} "
            "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"
