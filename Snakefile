# UMR: unsupervised multilingual dense retrieval via generative pseudo labeling.
# The method as a DAG: data -> models -> encode -> index -> retrieve -> rerank -> distill
# (-> next iteration) -> evaluate -> metrics. See README.md for how it maps to the paper.
from umr.config import validate_for_snakemake

# The toy default, unless config files are given (`--configfile config.paper.yaml`, or the
# SLURM profile's): those then replace it instead of being merged into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


validate_for_snakemake(config)

include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/encode.smk"
include: "rules/index.smk"
include: "rules/retrieve.smk"
include: "rules/rerank.smk"
include: "rules/distill.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/baselines.smk"


# `snakemake` (= `make toy`): the method and its baselines, Tables 1, 2, 3, 7, the iteration plot.
rule all:
    input:
        target_files("all"),
    default_target: True


# `snakemake ablations` (= `make ablations`): the grids' variants, Tables 4-6, the ablation table
# and the knob plots, reusing everything `all` built.
rule ablations:
    input:
        target_files("ablations"),
