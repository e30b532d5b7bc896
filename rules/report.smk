# Stage: report. The paper's tables (Markdown, CSV, LaTeX, HTML) and the ablation plots (PNG, PDF),
# one rule each, so `snakemake results/<dataset>/tables/table5.md` runs only what Table 5
# needs: a table's inputs are the evaluation files of its rows, not metrics.csv (which
# depends on everything); it collects them with the same code as `rule metrics`.
# `snakemake --report report.html` bundles them with the captions under report/.
# The scripts read results/<dataset> off their input paths (no directory parameter); the
# path helpers live in umr/report.py. Supervised systems' runs supplied by the user
# (config `supervised`, umr/supplied.py) are scored by rule evaluate_supplied.
from umr.plots import PLOTS, plot_spec
from umr.tables import TABLES, table_spec


report: "../report/workflow.rst"


for table_id in TABLES:
    spec = table_spec(config, table_id)

    rule:
        name:
            f"table_{table_id}"
        input:
            [report_paths.evaluation_path(RESULTS, e) for e in spec.evaluations],
        output:
            md=f"results/{{dataset}}/tables/{table_id}.md",
            csv=f"results/{{dataset}}/tables/{table_id}.csv",
            tex=f"results/{{dataset}}/tables/{table_id}.tex",
            html=report(
                f"results/{{dataset}}/tables/{table_id}.html",
                caption=f"../report/{table_id}.rst",
                category="Tables",
                labels={"table": table_id},
            ),
        params:
            table=table_id,
            spec=spec.to_json(),
            display=display_names(),
            default_rerank=default_rerank(config).tag,
            report_rerank=report_rerank(config).tag,
            default_distill=default_distill(config).tag,
        log:
            f"results/{{dataset}}/logs/tables/{table_id}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.tables --table {params.table} --spec {params.spec:q} --evals {input} "
            "--display {params.display:q} "
            "--default-rerank {params.default_rerank} --report-rerank {params.report_rerank} "
            "--default-distill {params.default_distill} "
            "--out-md {output.md} --out-csv {output.csv} --out-tex {output.tex} --out-html {output.html} > {log} 2>&1"


for plot_id in PLOTS:
    spec = plot_spec(config, plot_id)

    rule:
        name:
            f"plot_{plot_id}"
        input:
            [report_paths.evaluation_path(RESULTS, e) for e in spec.evaluations],
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
            display=display_names(),
        log:
            f"results/{{dataset}}/logs/plots/{plot_id}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.plots --plot {params.plot} --spec {params.spec:q} --evals {input} "
            "--display {params.display:q} "
            "--out-png {output.png} --out-pdf {output.pdf} > {log} 2>&1"


# Supervised systems' runs supplied by the user (config `supervised`): scored like our runs,
# beside the lineage (results/<dataset>/<task>/supplied/<name>/), for Tables 1, 3 and 7.
rule evaluate_supplied:
    input:
        unpack(lambda w: report_paths.supplied_corpus(config, w, corpus_file, offsets_file)),
        runs=lambda w: report_paths.supplied_runs(config, w),
        gold=task_questions,
        english_gold=english_gold,
    output:
        "results/{dataset}/{task}/supplied/{name}/eval/{split}.csv",
    params:
        english_gold=english_gold_option,
        corpus=lambda w, input: report_paths.supplied_corpus_options(input),
        hit=hit_option,
        languages=LANGUAGES,
    log:
        "results/{dataset}/{task}/supplied/{name}/logs/evaluate.{split}.log",
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.supplied --task {wildcards.task} --split {wildcards.split} --gold {input.gold} "
        "{params.english_gold} --run {input.runs:q} {params.corpus} --languages {params.languages} "
        "{params.hit} --out {output} > {log} 2>&1"
