# Stage: index. One faiss index per shard (exact inner product by default).


rule build_index:
    input:
        "results/{dataset}/{task}/{node}/index/shard-{shard}-of-{shards}.npy",
    output:
        "results/{dataset}/{task}/{node}/index/shard-{shard}-of-{shards}.faiss",
    params:
        factory=config["retrieval"]["index"],
    priority: PRIORITY_CHAIN
    log:
        "results/{dataset}/{task}/{node}/logs/build_index.shard-{shard}-of-{shards}.log",
    resources:
        mem_mb=memory_mb("build_index"),
        runtime=runtime_minutes("build_index"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.index --embeddings {input} --factory {params.factory:q} --out {output} > {log} 2>&1"
