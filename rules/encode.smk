# Stage: encode. Each corpus shard is embedded by the node's passage encoder (a GPU job).
# Resumable: finished chunks of 50k passages wait in `<output>.parts/` (not declared, so a
# failed job keeps them); a rerun or retry (TIMEOUT, preemption) encodes only the rest, and
# the merged output is written atomically (tests/test_resume.py).
# The embeddings are temp(): only build_index reads them, and a Flat index stores the same
# vectors, so keeping both would double the disk (44 M x 768 x 4 B = 135 GB per XOR-Full
# node twice); Snakemake deletes a shard's .npy once its .faiss is built.


rule encode_corpus:
    input:
        model=retriever_model,
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        temp("results/{dataset}/{task}/{node}/index/shard-{shard}-of-{shards}.npy"),
    params:
        max_length=config["retrieval"]["max_length"],
        batch_size=config["retrieval"]["batch_size"],
        fp16="--fp16" if config["retrieval"]["fp16_embeddings"] else "",
        precision=config["retrieval"]["precision"],
    priority: PRIORITY_CHAIN
    log:
        "results/{dataset}/{task}/{node}/logs/encode_corpus.shard-{shard}-of-{shards}.log",
    benchmark:
        "results/{dataset}/{task}/{node}/benchmarks/encode_corpus.shard-{shard}-of-{shards}.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=memory_mb("encode_corpus"),
        runtime=runtime_minutes("encode_corpus"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.encode --retriever {input.model} --corpus {input.corpus} --offsets {input.offsets} "
        "--shard {wildcards.shard} --num-shards {wildcards.shards} --max-length {params.max_length} "
        "--batch-size {params.batch_size} {params.fp16} --precision {params.precision} --threads {threads} "
        "--out {output} > {log} 2>&1"
