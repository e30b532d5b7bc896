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
    resources:
        mem_mb=memory_mb("bm25_split_collection"),
        runtime=runtime_minutes("bm25_split_collection"),
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
        mem_mb=memory_mb("bm25_index"),
        runtime=runtime_minutes("bm25_index"),
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
    resources:
        mem_mb=memory_mb("bm25_search"),
        runtime=runtime_minutes("bm25_search"),
    conda:
        "../envs/bm25.yaml"
    shell:
        "python -m umr.baselines.bm25 search --index {input.index} --questions {input.questions} "
        "--lang {wildcards.lang} --k1 {params.k1} --b {params.b} --top-k {params.top_k} "
        "--threads {threads} --out {output} > {log} 2>&1"


# mGenQ: questions generated for randomly sampled passages of the task's collection, as many
# per language as a training split has questions in it (the task's own, or XOR-Retrieve's with
# baselines.mgenq.count_from: xor_retrieve, as the paper), then a retriever trained on
# them from the node the questions hang off (the initial retriever in the plan). The trained
# retriever is an ordinary retriever node (`<gparent>/<gtag>/<ctag>`): encode_corpus,
# build_index, retrieve and evaluate treat it like UMR's (rules/common.smk: retriever_model).
# Training runs umr.distill's trainer, so it checkpoints (every 500 steps, the CLI's default),
# stops on SIGTERM and resumes like rule distill (see rules/distill.smk; the signal comes
# umr.distill.stop_signal_seconds before the time limit).
rule generate_questions:
    input:
        model=genq_model,
        train=genq_count_questions,
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        questions="results/{dataset}/{task}/{gparent}/{gtag}/questions.jsonl",
        stats_json="results/{dataset}/{task}/{gparent}/{gtag}/questions.stats.json",
        stats_csv="results/{dataset}/{task}/{gparent}/{gtag}/questions.stats.csv",
    params:
        options=genq_options,
        template=genq_template,
        languages=LANGUAGES,
    log:
        "results/{dataset}/{task}/{gparent}/{gtag}/logs/generate_questions.log",
    benchmark:
        "results/{dataset}/{task}/{gparent}/{gtag}/benchmarks/generate_questions.tsv"
    threads: THREADS
    resources:
        gpu=GPUS,
        mem_mb=memory_mb("generate_questions"),
        runtime=runtime_minutes("generate_questions"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.baselines.mgenq generate --model {input.model} --corpus {input.corpus} "
        "--offsets {input.offsets} --languages {params.languages} --count-from {input.train} "
        "--template {params.template:q} {params.options} --threads {threads} --out {output.questions} "
        "--stats-out {output.stats_json} --stats-csv {output.stats_csv} > {log} 2>&1"


rule train_mgenq:
    input:
        student=genq_student,
        pairs="results/{dataset}/{task}/{gparent}/{gtag}/questions.jsonl",
        corpus=task_corpus,
        offsets=task_offsets,
    output:
        directory("results/{dataset}/{task}/{gparent}/{gtag}/{ctag}/retriever"),
    params:
        options=contrastive_options,
        max_length=config["retrieval"]["max_length"],
        precision=config["baselines"]["mgenq"]["train"]["precision"],  # not in the ct- tag
    log:
        "results/{dataset}/{task}/{gparent}/{gtag}/{ctag}/logs/train_mgenq.log",
    benchmark:
        "results/{dataset}/{task}/{gparent}/{gtag}/{ctag}/benchmarks/train_mgenq.tsv"
    threads: THREADS
    retries: 3
    resources:
        gpu=GPUS,
        mem_mb=memory_mb("train_mgenq"),
        runtime=runtime_minutes("train_mgenq"),
        slurm_extra=f"--signal=TERM@{config['umr']['distill']['stop_signal_seconds']}",
    conda:
        "../envs/umr.yaml"
    shell:
        "exec python -m umr.baselines.mgenq train --student {input.student} --pairs {input.pairs} "
        "--corpus {input.corpus} --offsets {input.offsets} {params.options} "
        "--max-length {params.max_length} --precision {params.precision} --threads {threads} "
        "--out {output} > {log} 2>&1"
