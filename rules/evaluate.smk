# Stage: evaluate. R@2kt/R@5kt (XOR-Retrieve, official semantics) and top-1/5/20 answer
# presence (XOR-Full, paper Table 7) per language, then the tidy metrics files.


rule evaluate:
    input:
        runs=evaluated_runs,
        gold=task_questions,
        english_gold=english_gold,
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        "results/{dataset}/{task}/{enode}/eval/{split}.csv",
    params:
        english_gold=english_gold_option,
        hit=hit_option,
        languages=LANGUAGES,
    log:
        "results/{dataset}/{task}/{enode}/logs/evaluate.{split}.log",
    resources:
        mem_mb=memory_mb("evaluate"),
        runtime=runtime_minutes("evaluate"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.evaluate --task {wildcards.task} --split {wildcards.split} --gold {input.gold} "
        "{params.english_gold} --run {input.runs} --corpus {input.corpus} --corpus-offsets {input.offsets} "
        "--languages {params.languages} {params.hit} "
        "--out {output} > {log} 2>&1"


# metrics.csv: the method and its baselines (target `all`); metrics_ablations.csv: the grids'
# variants (target `ablations`). Same columns: concatenated, they hold every reported run.
for target, metrics_file in METRICS_FILES.items():
    metrics_name = metrics_file.removesuffix(".csv")  # the rule's and its log's name

    rule:
        name:
            metrics_name
        input:
            evaluation_files(target),
        output:
            f"results/{{dataset}}/{metrics_file}",
        params:
            display=display_names(),
            default_rerank=default_rerank(config).tag,
            report_rerank=report_rerank(config).tag,
            default_distill=default_distill(config).tag,
            default_genq=default_genq_tags(),
        log:
            f"results/{{dataset}}/logs/{metrics_name}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.metrics --evals {input} "
            "--display {params.display:q} --default-rerank {params.default_rerank} "
            "--report-rerank {params.report_rerank} "
            "--default-distill {params.default_distill} --default-genq {params.default_genq} --out {output} > {log} 2>&1"
