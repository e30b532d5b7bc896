"""SLURM log directory names stay under NAME_MAX however deep the lineage (umr.slurm_names)."""

from __future__ import annotations

import pytest

from umr.lineage import DistillSpec, Node, RerankSpec
from umr.slurm_names import NAME_LIMIT, install, short_name


def _paper_rerank_wildcards(iterations: int) -> str:
    """The plugin's name for config.paper.yaml's deepest "+ rerank" job: its wildcard values joined by "_"."""
    rerank = RerankSpec("mt5-xl", "official", "mean", 100)
    distill = DistillSpec(grad_scale=0.125, strip_question_mark=True, keep="best_val_rank", val_questions=1000)
    node = Node("mcontriever")
    for _ in range(iterations):
        node = node.child(rerank, distill)
    return "_".join(["xor", "xor_retrieve", node.path, rerank.tag, "dev", "fi", "0", "1"]).replace("/", "_")


def test_short_names_are_kept_and_long_ones_shortened_uniquely():
    assert short_name("rehearsal_xor_full_dev_ko_0_1") == "rehearsal_xor_full_dev_ko_0_1"
    two, three = _paper_rerank_wildcards(2), _paper_rerank_wildcards(3)
    assert len(two) > 255 and len(three) > len(two)  # what failed the submission before
    for name in (two, three):
        short = short_name(name)
        assert len(short.encode()) <= NAME_LIMIT < 255
        assert short.startswith("xor_xor_retrieve_mcontriever_") and short.endswith("_mean_k100_dev_fi_0_1")
    assert short_name(two) != short_name(three)
    assert short_name(two.replace("_fi_", "_ja_")) != short_name(two)  # the digest covers the whole name
    # multi-byte characters are cut on character boundaries
    assert len(short_name("ü" * 300).encode()) <= NAME_LIMIT


def test_install_wraps_the_plugins_name_function():
    plugin = pytest.importorskip("snakemake_executor_plugin_slurm")
    from snakemake_executor_plugin_slurm import utils

    assert install() and install()  # idempotent
    assert plugin.get_job_wildcards.umr_short_name

    class Job:
        wildcards = ["xor", "xor_retrieve", _paper_rerank_wildcards(2)]

    assert utils.get_job_wildcards(Job()) == "_".join(Job.wildcards).replace("/", "_")  # the original is untouched
    assert plugin.get_job_wildcards(Job()) == short_name(utils.get_job_wildcards(Job()))
