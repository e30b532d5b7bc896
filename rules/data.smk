# Stage: data. The benchmark in XOR-TyDi QA's formats (JSONL questions, DPR TSV
# collections) under results/<dataset>/data/, and an offset table per collection.


if config["benchmark"] == "toy":

    rule toy_benchmark:
        output:
            questions=expand(
                "results/{{dataset}}/data/{task}/{split}.jsonl", task=TASKS, split=SPLITS
            ),
            corpora=expand("results/{{dataset}}/data/corpus/{task}.tsv", task=TASKS),
        params:
            sizes=json.dumps(config["toy"]),
            languages=LANGUAGES,
            out_dir=f"{RESULTS}/data",
        log:
            "results/{dataset}/logs/toy_benchmark.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.toy --out {params.out_dir} --sizes {params.sizes:q} "
            "--languages {params.languages} > {log} 2>&1"


if config["benchmark"] == "xor-tydi":

    # Downloads run where Snakemake runs (the login node on SLURM): compute nodes
    # often have no internet. Resumable (`<file>.part`) and verified against
    # results/<dataset>/data/MANIFEST.json (umr.download).
    localrules:
        download_questions,
        download_corpus,
        xor_tydi_data,

    rule download_questions:
        output:
            "results/{dataset}/data/{task}/{qsplit}.jsonl",
        wildcard_constraints:
            qsplit="train|dev|test",
        params:
            url=download_url,
            manifest=download_manifest,
            options=download_options,
        log:
            "results/{dataset}/logs/download.{task}.{qsplit}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.download file --url {params.url:q} --out {output} "
            "--manifest {params.manifest} {params.options} > {log} 2>&1"

    rule download_corpus:
        output:
            "results/{dataset}/data/corpus/{task}.tsv",
        params:
            url=download_url,
            manifest=download_manifest,
            options=download_options,
        log:
            "results/{dataset}/logs/download.corpus.{task}.log",
        conda:
            "../envs/umr.yaml"
        shell:
            "python -m umr.download file --url {params.url:q} --out {output} "
            "--manifest {params.manifest} {params.options} > {log} 2>&1"

    # `snakemake --profile slurm xor_tydi_data`: fetch everything up front (a login node
    # with internet), test questions included (for a leaderboard submission).
    rule xor_tydi_data:
        input:
            xor_tydi_files(),


rule corpus_offsets:
    input:
        "results/{dataset}/data/corpus/{task}.tsv",
    output:
        "results/{dataset}/data/corpus/{task}.offsets.npz",
    log:
        "results/{dataset}/logs/corpus_offsets.{task}.log",
    resources:
        mem_mb=corpus_scan_mem_mb,
        runtime=runtime_minutes("corpus_offsets"),
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.corpus --tsv {input} --out {output} > {log} 2>&1"
