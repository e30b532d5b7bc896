# Stage 1 of UMR: unsupervised multilingual reranking. Per language (and chunk of its
# questions), a frozen LM scores each question's top-k by log p(question | passage).
# With umr.rerank.group_languages (the toy's setting) one job writes every language's run of a
# split, the same files and scores: on a CPU a job's start-up (~4 s of imports) outweighs the
# scoring of a toy language (1-3 s), and a cluster's GPUs would rather take languages in parallel.
# Resumable: scores of finished parts (~20k pairs, whole questions) wait in `<output>.parts/`
# (not declared, so a failed job keeps them); a rerun or retry scores only the rest
# (tests/test_resume.py).


rule rerank:
    input:
        run="results/{dataset}/{task}/{node}/runs/{split}.trec",
        questions=task_questions,
        corpus=task_corpus,
        offsets=task_offsets,
        model=reranker_model,
        cache=rerank_cache,
    output:
        RERANK_JOB["output"],
    params:
        spec=rerank_spec,
        languages=rerank_languages,
        chunk=rerank_chunk_options,
        batch_tokens=config["umr"]["rerank"]["batch_tokens"],
        dtype=config["umr"]["rerank"]["dtype"],
    priority: chain_priority
    log:
        RERANK_JOB["log"],
    benchmark:
        RERANK_JOB["benchmark"]
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=memory_mb("rerank"),
        runtime=runtime_minutes("rerank"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.rerank --model {input.model} --template {params.spec.template} "
        "--aggregation {params.spec.aggregation} --top-k {params.spec.top_k} --run {input.run} "
        "--questions {input.questions} --lang {params.languages} --corpus {input.corpus} "
        "--offsets {input.offsets} --cache {input.cache} {params.chunk} --batch-tokens {params.batch_tokens} "
        "--dtype {params.dtype} --threads {threads} --out {output} > {log} 2>&1"
