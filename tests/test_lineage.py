"""Lineage paths: tags round-trip, iteration = depth, variants share their parents' files."""

from __future__ import annotations

import pytest

from umr.config import validate_config
from umr.lineage import DistillSpec, Node, RerankSpec, score_cache_sources
from umr.metrics import describe
from umr.plan import default_rerank, evaluations, planned_reranks, report_rerank, umr_chain


@pytest.mark.parametrize("spec", [
    DistillSpec(),
    DistillSpec(temperature=0.04, batch_size=4, in_batch_negatives=False, learning_rate=1e-4, negate_teacher=True),
    DistillSpec(temperature=1.0, max_grad_norm=0.5, epochs=1, warmup_steps=0),
])
def test_distill_tags_round_trip(spec):
    assert DistillSpec.parse(spec.tag) == spec
    assert "/" not in spec.tag


def test_rerank_tags_round_trip():
    spec = RerankSpec("mt5-xl", "paper", "sum", 30)
    assert spec.tag == "rr-mt5-xl_paper_sum_k30"
    assert RerankSpec.parse(spec.tag) == spec
    with pytest.raises(ValueError):
        RerankSpec.parse("rr-mt5_official_median_k30")


def test_iteration_is_depth_and_paths_nest():
    rerank, distill = RerankSpec("mt5"), DistillSpec()
    it1 = Node("mcontriever").child(rerank, distill)
    it2 = it1.child(rerank, distill)
    assert (it1.iteration, it2.iteration) == (1, 2)
    assert it2.path.startswith(it1.path + "/")
    assert Node.parse(it2.path) == it2
    assert it2.parent == it1


def test_variants_differing_in_distillation_share_the_reranking():
    rerank = RerankSpec("mt5")
    root = Node("mcontriever")
    a, b = root.child(rerank, DistillSpec(temperature=0.1)), root.child(rerank, DistillSpec(temperature=1.0))
    assert a.path.rsplit("/", 1)[0] == b.path.rsplit("/", 1)[0] == root.reranked(rerank)


def test_score_cache_reads_ancestors_with_the_same_lm_settings():
    rerank = RerankSpec("mt5", top_k=60)
    it2 = Node("m").child(rerank, DistillSpec()).child(rerank, DistillSpec())
    assert score_cache_sources(it2, rerank) == [it2.parent.reranked(rerank), Node("m").reranked(rerank)]
    smaller = RerankSpec("mt5", top_k=20)
    assert Node("m").reranked(rerank) in score_cache_sources(Node("m"), smaller, default=rerank)
    assert score_cache_sources(Node("m"), RerankSpec("mt5", template="paper", top_k=20), default=rerank) == []


def test_plan_covers_the_papers_rows_and_only_needed_reranks():
    config = validate_config({})
    chain = umr_chain(config)
    assert [n.iteration for n in chain] == [0, 1, 2]
    nodes = {e.node for e in evaluations(config) if e.task == "xor_retrieve"}
    rerank = RerankSpec("mt5", top_k=100)
    assert chain[0].reranked(rerank) in nodes and chain[2].reranked(rerank) in nodes
    assert any(n.endswith("_neg") for n in nodes)
    needed = {(t, n, s) for t, n, s in planned_reranks(config) if t == "xor_retrieve"}
    assert needed == {("xor_retrieve", chain[0].reranked(rerank), "train"), ("xor_retrieve", chain[1].reranked(rerank), "train"),
                      ("xor_retrieve", chain[0].reranked(rerank), "dev"), ("xor_retrieve", chain[2].reranked(rerank), "dev")}


def test_report_top_k_sets_the_depth_of_the_rerank_rows_only():
    config = validate_config({"umr": {"rerank": {"top_k": 10, "report_top_k": 60},
                                      "distill": {"passages_per_question": 8}}})
    chain = umr_chain(config)
    trained, reported = RerankSpec("mt5", top_k=10), RerankSpec("mt5", top_k=60)
    assert chain[1] == Node("mcontriever").child(trained, chain[1].steps[-1][1])  # UMR trains on the top-10
    nodes = {e.node for e in evaluations(config) if e.task == "xor_retrieve"}
    assert {chain[0].reranked(reported), chain[2].reranked(reported)} <= nodes
    assert chain[0].reranked(trained) not in nodes
    needed = {(n, s) for t, n, s in planned_reranks(config) if t == "xor_retrieve"}
    assert needed == {(chain[0].reranked(trained), "train"), (chain[1].reranked(trained), "train"),
                      (chain[0].reranked(reported), "dev"), (chain[2].reranked(reported), "dev")}
    # The "+ rerank" rows at the reported depth are the default, not a top_k variant.
    row = describe(chain[0].reranked(reported), {"mcontriever": "mContriever"}, default_rerank(config), None,
                   report_rerank=report_rerank(config))
    assert (row["system"], row["variant"], row["rerank_top_k"]) == ("mContriever + rerank", "default", 60)
    assert describe(chain[0].reranked(trained), {}, default_rerank(config), None,
                    report_rerank=report_rerank(config))["variant"] == "top_k=10"
    # null: the training depth, as in the paper.
    assert report_rerank(validate_config({})) == default_rerank(validate_config({}))
