# Stage: retrieve. Top-k passages of every question of a split (all languages), searched
# shard by shard and merged exactly, as a TREC run.


rule retrieve:
    input:
        model=retriever_model,
        questions=task_questions,
        index=shard_indexes,
        offsets=task_offsets,
    output:
        "results/{dataset}/{task}/{node}/runs/{split}.trec",
    params:
        languages=LANGUAGES,
        top_k=config["retrieval"]["top_k"],
        max_length=config["retrieval"]["max_length"],
        batch_size=config["retrieval"]["batch_size"],
        gpu_search="--gpu-search" if config["retrieval"]["gpu_search"] else "",
        precision=config["retrieval"]["precision"],
    priority: chain_priority
    log:
        "results/{dataset}/{task}/{node}/logs/retrieve.{split}.log",
    threads: THREADS
    resources:
        gpu=SEARCH_GPUS,
        mem_mb=memory_mb("retrieve"),
        runtime=runtime_minutes("retrieve"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.retrieve --retriever {input.model} --questions {input.questions} "
        "--languages {params.languages} --index {input.index} --offsets {input.offsets} "
        "--top-k {params.top_k} --max-length {params.max_length} --batch-size {params.batch_size} "
        "{params.gpu_search} --precision {params.precision} --threads {threads} --out {output} > {log} 2>&1"
