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


rule corpus_offsets:
    input:
        "results/{dataset}/data/corpus/{task}.tsv",
    output:
        "results/{dataset}/data/corpus/{task}.offsets.npz",
    log:
        "results/{dataset}/logs/corpus_offsets.{task}.log",
    conda:
        "../envs/umr.yaml"
    shell:
        "python -m umr.corpus --tsv {input} --out {output} > {log} 2>&1"
