# Stage 1 of UMR: unsupervised multilingual reranking. Per language (and chunk of its
# questions), a frozen LM scores each question's top-k by log p(question | passage).
# With umr.rerank.group_languages (the toy's setting) one job writes every language's run of a
# split, the same files and scores: on a CPU a job's start-up (~4 s of imports) outweighs the
# scoring of a toy language (1-3 s), and a cluster's GPUs would rather take languages in parallel.
# Resumable: scores of finished parts (~20k pairs, whole questions) wait in `<output>.parts/`
# (not declared, so a failed job keeps them); a rerun or retry scores only the rest
# (tests/test_resume.py).


if not config["umr"]["rerank"]["group_languages"]:

    rule rerank:
        input:
            run="results/{dataset}/{task}/{node}/runs/{split}.trec",
            questions=task_questions,
            corpus=task_corpus,
            offsets=task_offsets,
            model=reranker_model,
            cache=rerank_cache,
        output:
            "results/{dataset}/{task}/{node}/{rtag}/runs/{split}/{lang}.chunk-{chunk}-of-{chunks}.trec",
        params:
            spec=rerank_spec,
            batch_tokens=config["umr"]["rerank"]["batch_tokens"],
            dtype=config["umr"]["rerank"]["dtype"],
        priority: chain_priority
        log:
            "results/{dataset}/{task}/{node}/{rtag}/logs/rerank.{split}.{lang}.chunk-{chunk}-of-{chunks}.log",
        benchmark:
            "results/{dataset}/{task}/{node}/{rtag}/benchmarks/rerank.{split}.{lang}.chunk-{chunk}-of-{chunks}.tsv"
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
            "--questions {input.questions} --lang {wildcards.lang} --corpus {input.corpus} "
            "--offsets {input.offsets} --cache {input.cache} --chunk {wildcards.chunk} "
            "--num-chunks {wildcards.chunks} --batch-tokens {params.batch_tokens} --dtype {params.dtype} "
            "--threads {threads} --out {output} > {log} 2>&1"

else:

    rule rerank:
        input:
            run="results/{dataset}/{task}/{node}/runs/{split}.trec",
            questions=task_questions,
            corpus=task_corpus,
            offsets=task_offsets,
            model=reranker_model,
            cache=rerank_cache_all_languages,
        output:
            expand("results/{{dataset}}/{{task}}/{{node}}/{{rtag}}/runs/{{split}}/{lang}.chunk-0-of-1.trec",
                   lang=LANGUAGES),
        params:
            spec=rerank_spec,
            languages=LANGUAGES,
            batch_tokens=config["umr"]["rerank"]["batch_tokens"],
            dtype=config["umr"]["rerank"]["dtype"],
        priority: chain_priority
        log:
            "results/{dataset}/{task}/{node}/{rtag}/logs/rerank.{split}.all-languages.log",
        benchmark:
            "results/{dataset}/{task}/{node}/{rtag}/benchmarks/rerank.{split}.all-languages.tsv"
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
            "--offsets {input.offsets} --cache {input.cache} --batch-tokens {params.batch_tokens} "
            "--dtype {params.dtype} --threads {threads} --out {output} > {log} 2>&1"
