# Stage: evaluate. R@2kt/R@5kt (XOR-Retrieve, official semantics) and top-1/5/20 answer
# presence (XOR-Full, paper Table 7) per language, then one tidy metrics.csv.


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
        "--languages {params.languages} "
        "--out {output} > {log} 2>&1"


rule metrics:
    input:
        evaluation_files(),
    output:
        "results/{dataset}/metrics.csv",
    params:
        display=display_names(),
        default_rerank=default_rerank(config).tag,
        report_rerank=report_rerank(config).tag,
        default_distill=default_distill(config).tag,
        default_genq=default_genq_tags(),
    log:
        "results/{dataset}/logs/metrics.log",
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.metrics --evals {input} "
        "--display {params.display:q} --default-rerank {params.default_rerank} "
        "--report-rerank {params.report_rerank} "
        "--default-distill {params.default_distill} --default-genq {params.default_genq} --out {output} > {log} 2>&1"
