"""Sharded retrieval is exact: S shard indexes merged = one index = NumPy brute force.

At paper scale the corpus is split into `retrieval.shards` contiguous shards (one
encoding job and one faiss index each, `umr.encode.shard_rows`), and
`umr.retrieve.search_shards` merges the per-shard top-k. These tests build the shard
indexes the way the pipeline does (`umr.index.build_index` + `write_index`) on
toy-like embeddings (768-d would be slow for nothing: 48-d, a few thousand passages,
duplicated passages that tie exactly, as XOR-Full's copy of English passages does).
"""

from __future__ import annotations

import numpy as np
import pytest

from umr.encode import shard_rows
from umr.index import build_index, write_index
from umr.retrieve import search_shards

DIM, N_PASSAGES, N_QUERIES, TOP_K = 48, 3001, 40, 25


def brute_force(queries: np.ndarray, passages: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product, ties towards the lower row (the order search_shards promises)."""
    scores = queries.astype(np.float64) @ passages.astype(np.float64).T
    rows = np.broadcast_to(np.arange(len(passages)), scores.shape)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(0)
    topics = rng.normal(size=(60, DIM))
    passages = topics[rng.integers(0, 60, N_PASSAGES)] + 0.6 * rng.normal(size=(N_PASSAGES, DIM))
    passages[2000:2100] = passages[100:200]  # exact duplicates in other shards: exact ties
    queries = topics[rng.integers(0, 60, N_QUERIES)] + 0.6 * rng.normal(size=(N_QUERIES, DIM))
    queries[:5] = passages[[100, 150, 199, 2050, 7]]  # queries whose best passages tie
    return passages.astype(np.float32), queries.astype(np.float32)


def canonical(rows: np.ndarray) -> np.ndarray:
    """Rows 2000-2099 are copies of 100-199: which copy wins a float32 tie depends on faiss's
    BLAS blocking (index layout), so compare passages, not copies."""
    return np.where((rows >= 2000) & (rows < 2100), rows - 1900, rows)


def _shard_indexes(passages: np.ndarray, n_shards: int, tmp_path, factory: str = "Flat",
                   dtype=np.float32) -> list[str]:
    paths = []
    for shard in range(n_shards):
        start, stop = shard_rows(len(passages), shard, n_shards)
        path = tmp_path / f"shard-{shard}-of-{n_shards}.faiss"
        write_index(build_index(passages[start:stop].astype(dtype), factory), path)
        paths.append(str(path))
    return paths


def test_shard_rows_partition_the_corpus():
    for n_rows, n_shards in [(10, 3), (3001, 7), (5, 5), (16, 1), (44_000_000, 16)]:
        ranges = [shard_rows(n_rows, s, n_shards) for s in range(n_shards)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n_rows
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        sizes = [stop - start for start, stop in ranges]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n_shards", [2, 3, 7, 16])
def test_sharded_topk_equals_unsharded_and_brute_force(corpus, tmp_path, n_shards):
    passages, queries = corpus
    one_scores, one_rows = search_shards(queries, _shard_indexes(passages, 1, tmp_path / "one"), TOP_K)
    scores, rows = search_shards(queries, _shard_indexes(passages, n_shards, tmp_path / "many"), TOP_K)
    bf_scores, bf_rows = brute_force(queries, passages, TOP_K)

    np.testing.assert_array_equal(canonical(rows), canonical(one_rows))  # same passages, same order
    np.testing.assert_allclose(scores, one_scores, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(canonical(rows), canonical(bf_rows))
    np.testing.assert_allclose(scores, bf_scores, rtol=1e-5, atol=1e-4)
    # the tie cases really tie, across shards (row r and its duplicate r + 1900)
    assert {100, 2000} <= set(rows[0][:2].tolist())


def test_fp16_embeddings_search_the_rounded_vectors_exactly(corpus, tmp_path):
    """fp16 storage (retrieval.fp16_embeddings) changes scores only by the rounding."""
    passages, queries = corpus
    half = passages.astype(np.float16)
    scores, rows = search_shards(queries, _shard_indexes(passages, 4, tmp_path, dtype=np.float16), TOP_K)
    bf_scores, bf_rows = brute_force(queries, half.astype(np.float32), TOP_K)
    np.testing.assert_array_equal(canonical(rows), canonical(bf_rows))
    np.testing.assert_allclose(scores, bf_scores, rtol=1e-5, atol=1e-4)


def test_compressed_index_per_shard_merges(corpus, tmp_path):
    """An approximate index type (IVF-PQ) per shard still merges into a valid global top-k."""
    passages, queries = corpus
    scores, rows = search_shards(queries, _shard_indexes(passages, 3, tmp_path, "IVF8,PQ8"), TOP_K)
    assert rows.shape == (N_QUERIES, TOP_K) and (rows >= 0).all() and (rows < N_PASSAGES).all()
    assert (np.diff(scores, axis=1) <= 0).all()  # merged best first
    bf_rows = brute_force(queries, passages, 10)[1]
    recall = np.mean([len(set(r[:10]) & set(b)) / 10 for r, b in zip(rows, bf_rows)])
    assert recall > 0.5, recall
