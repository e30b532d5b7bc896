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
    priority: toy_model_priority
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


if config["benchmark"] == "xor-tydi":

    # Hub models are fetched once, where Snakemake runs (compute nodes may lack
    # internet), into a local directory that every job reads with HF_HUB_OFFLINE=1;
    # with `hub_cache` set they are copied from that Hugging Face cache, offline.
    localrules:
        fetch_model,

    rule fetch_model:
        output:
            directory("results/{dataset}/models/hub/{name}"),
        params:
            repo_id=hub_model_id,
            revision=hub_model_revision,
            hub_cache=hub_cache_option,
        log:
            "results/{dataset}/logs/fetch_model.{name}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.download model --repo-id {params.repo_id} --revision {params.revision} "
            "{params.hub_cache} --out {output} > {log} 2>&1"
