# Stage 2 of UMR: knowledge-distilled retriever training. The student starts from the
# node's retriever and learns the reranker's distribution; the result is the next
# iteration's retriever, one directory deeper.


rule distill:
    input:
        student=retriever_model,
        questions=task_train_questions,
        reranked=distill_inputs,
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        directory("results/{dataset}/{task}/{node}/{rtag}/{dtag}/retriever"),
    params:
        options=distill_options,
        top_k=rerank_top_k,
        languages=LANGUAGES,
        max_length=config["retrieval"]["max_length"],
        grad_cache=grad_cache_options(config["umr"]["distill"]),
    log:
        "results/{dataset}/{task}/{node}/{rtag}/{dtag}/logs/distill.log",
    benchmark:
        "results/{dataset}/{task}/{node}/{rtag}/{dtag}/benchmarks/distill.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=32000,
        runtime=runtime_minutes(720),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.distill --student {input.student} --questions {input.questions} "
        "--languages {params.languages} --reranked {input.reranked} --corpus {input.corpus} "
        "--offsets {input.offsets} --top-k {params.top_k} {params.options} "
        "--max-length {params.max_length} {params.grad_cache} --threads {threads} "
        "--out {output} > {log} 2>&1"
