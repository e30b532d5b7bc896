# Stage: models. The initial retriever and the reranker LM as local checkpoints:
# tiny stand-ins built from the toy collections (no labels), or hub models fetched once.


rule toy_model:
    input:
        corpora=expand("results/{{dataset}}/data/corpus/{task}.tsv", task=TASKS),
    output:
        directory("results/{dataset}/models/toy/{name}"),
    params:
        kind=toy_model_kind,
        options=toy_model_options,
    log:
        "results/{dataset}/logs/toy_model.{name}.log",
    benchmark:
        "results/{dataset}/benchmarks/toy_model.{name}.tsv"
    threads: THREADS
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.models {params.kind} --corpus {input.corpora} --out {output} "
        "{params.options} --threads {threads} > {log} 2>&1"
