"""UMR: unsupervised multilingual dense retrieval via generative pseudo labeling.

One module per pipeline stage (data, toy, models, encode, index, retrieve, rerank,
distill, evaluate, baselines, report); each stage has a command-line entry point
(`python -m umr.<stage> --help`) that the Snakemake rules call.
"""

__version__ = "0.1.0"
