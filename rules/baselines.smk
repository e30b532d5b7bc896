# Baselines: BM25 (Pyserini, one Lucene index per collection language, CORA's k1/b) and
# mGenQ (questions generated from random passages, contrastive training). Their runs go
# through the same evaluation as UMR's.


rule bm25_split_collection:
    input:
        "results/{dataset}/data/corpus/xor_full.tsv",
    output:
        expand("results/{{dataset}}/xor_full/baselines/bm25/collections/{lang}.tsv", lang=LANGUAGES),
    params:
        out_dir=subpath(output[0], parent=True),
        langs=",".join(LANGUAGES),
    log:
        "results/{dataset}/xor_full/baselines/bm25/logs/split_collection.log",
    conda:
        "../envs/bm25.yaml"
    shell:
        "python -m umr.baselines.bm25 split --corpus {input} --out-dir {params.out_dir} "
        "--langs {params.langs} > {log} 2>&1"


rule bm25_index:
    input:
        bm25_collection,
    output:
        directory("results/{dataset}/{task}/baselines/bm25/index/{collection}"),
    log:
        "results/{dataset}/{task}/baselines/bm25/logs/index.{collection}.log",
    threads: THREADS
    resources:
        mem_mb=8000,
        runtime=runtime_minutes(240),
    conda:
        "../envs/bm25.yaml"
    shell:
        "python -m umr.baselines.bm25 index --corpus {input} --lang {wildcards.collection} "
        "--out {output} --threads {threads} > {log} 2>&1"


rule bm25_search:
    input:
        index=bm25_index,
        questions=task_questions,
    output:
        "results/{dataset}/{task}/baselines/bm25/runs/{split}/{lang}.trec",
    params:
        k1=config["baselines"]["bm25"]["k1"],
        b=config["baselines"]["bm25"]["b"],
        top_k=config["retrieval"]["top_k"],
    log:
        "results/{dataset}/{task}/baselines/bm25/logs/search.{split}.{lang}.log",
    threads: THREADS
    conda:
        "../envs/bm25.yaml"
    shell:
        "python -m umr.baselines.bm25 search --index {input.index} --questions {input.questions} "
        "--lang {wildcards.lang} --k1 {params.k1} --b {params.b} --top-k {params.top_k} "
        "--threads {threads} --out {output} > {log} 2>&1"
