"""`retrieval.gpu_search` (issue 13): shards stream through one GPU, results equal the CPU path.

No GPU here, so faiss's GPU API is faked: `index_cpu_to_gpu` wraps the CPU index in an object
that counts the live "GPU" copies and records the query blocks it is asked to search. That
checks what the streaming code promises (one `StandardGpuResources`, GPU 0, one shard on the
GPU at a time, bounded query blocks, the same exact merge) without faiss-gpu; the kernels
themselves are faiss's. Without GPU support, `--gpu-search` is a one-line error.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from test_sharding import _shard_indexes, canonical
from umr import retrieve
from umr.errors import UMRError
from umr.retrieve import GPU_MAX_K, QUERY_BLOCK, search_shards

DIM, N_PASSAGES, TOP_K = 48, 3001, 25
N_QUERIES = QUERY_BLOCK + 300  # more than one block


class FakeGpu:
    """Stand-in for faiss-gpu: StandardGpuResources and index_cpu_to_gpu over CPU indexes."""

    def __init__(self):
        self.resources, self.devices, self.blocks = [], [], []
        self.live = self.max_live = 0

    def StandardGpuResources(self):
        res = object()
        self.resources.append(res)
        return res

    def index_cpu_to_gpu(self, res, device, index):
        assert res in self.resources
        self.devices.append(device)
        return FakeGpuIndex(self, index)


class FakeGpuIndex:
    def __init__(self, gpu: FakeGpu, index):
        self.gpu, self.index = gpu, index
        self.d, self.ntotal = index.d, index.ntotal
        gpu.live += 1
        gpu.max_live = max(gpu.max_live, gpu.live)

    def search(self, queries, k):
        self.gpu.blocks.append(len(queries))
        return self.index.search(queries, k)

    def __del__(self):
        self.gpu.live -= 1


@pytest.fixture
def fake_gpu(monkeypatch):
    gpu = FakeGpu()
    monkeypatch.setattr(faiss, "StandardGpuResources", gpu.StandardGpuResources, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", gpu.index_cpu_to_gpu, raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    return gpu


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    topics = rng.normal(size=(50, DIM))
    passages = topics[rng.integers(0, 50, N_PASSAGES)] + 0.6 * rng.normal(size=(N_PASSAGES, DIM))
    passages[2000:2100] = passages[100:200]  # exact ties across shards
    queries = topics[rng.integers(0, 50, N_QUERIES)] + 0.6 * rng.normal(size=(N_QUERIES, DIM))
    queries[:3] = passages[[100, 150, 2050]]
    return passages.astype(np.float32), queries.astype(np.float32)


@pytest.mark.parametrize("n_shards", [1, 5])
def test_gpu_streaming_equals_the_cpu_path(data, tmp_path, fake_gpu, n_shards):
    passages, queries = data
    paths = _shard_indexes(passages, n_shards, tmp_path)
    cpu_scores, cpu_rows = search_shards(queries, paths, TOP_K)
    one_scores, one_rows = search_shards(queries, _shard_indexes(passages, 1, tmp_path / "one"), TOP_K)
    assert not fake_gpu.devices  # the CPU path never touches the GPU API

    scores, rows = search_shards(queries, paths, TOP_K, gpu=True)
    np.testing.assert_array_equal(rows, cpu_rows)
    np.testing.assert_array_equal(scores, cpu_scores)
    np.testing.assert_array_equal(canonical(rows), canonical(one_rows))
    np.testing.assert_allclose(scores, one_scores, rtol=1e-5, atol=1e-4)
    assert len(fake_gpu.resources) == 1  # one GPU context for all shards
    assert fake_gpu.devices == [0] * n_shards  # each shard to GPU 0
    assert fake_gpu.max_live == 1 and fake_gpu.live == 0  # freed before the next shard is copied
    assert fake_gpu.blocks == [QUERY_BLOCK, N_QUERIES - QUERY_BLOCK] * n_shards


def test_small_query_blocks_and_shards_smaller_than_k_merge_the_same(data, tmp_path, fake_gpu):
    passages, queries = data
    paths = _shard_indexes(passages[:90], 6, tmp_path)  # 15 passages per shard < k = 25
    cpu = search_shards(queries[:50], paths, TOP_K)
    gpu = search_shards(queries[:50], paths, TOP_K, gpu=True, query_block=7)
    np.testing.assert_array_equal(gpu[0], cpu[0])
    np.testing.assert_array_equal(gpu[1], cpu[1])
    assert max(fake_gpu.blocks) == 7


def test_without_gpu_support_gpu_search_is_a_one_line_error(data, tmp_path, monkeypatch):
    passages, queries = data
    paths = _shard_indexes(passages[:100], 2, tmp_path)
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)  # faiss-cpu
    with pytest.raises(UMRError, match=r"retrieval\.gpu_search.*faiss-gpu \(envs/gpu\.yaml\)") as err:
        search_shards(queries[:5], paths, TOP_K, gpu=True)
    assert "\n" not in str(err.value)
    monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)  # faiss-gpu, no GPU visible
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    with pytest.raises(UMRError, match=r"retrieval\.gpu_search.*faiss-gpu"):
        search_shards(queries[:5], paths, TOP_K, gpu=True)


def test_cli_fails_before_encoding_without_gpu_support(tmp_path, monkeypatch, capsys):
    monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    missing = str(tmp_path / "missing")
    status = retrieve.run_cli(retrieve._parser, retrieve._main,
                              ["--retriever", missing, "--questions", missing, "--languages", "ja", "--index", missing,
                               "--offsets", missing, "--gpu-search", "--out", str(tmp_path / "run.trec")])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 1 and len(err) == 1 and err[0].startswith("error: retrieval.gpu_search"), err


def test_top_k_above_the_gpu_limit_is_an_error(data, tmp_path, fake_gpu):
    passages, queries = data
    paths = _shard_indexes(passages[:100], 2, tmp_path)
    with pytest.raises(UMRError, match=rf"retrieval\.top_k {GPU_MAX_K + 1} is above faiss's GPU limit of {GPU_MAX_K}"):
        search_shards(queries[:5], paths, GPU_MAX_K + 1, gpu=True)
    assert not fake_gpu.devices


def test_an_index_type_faiss_cannot_move_is_an_error(data, tmp_path, fake_gpu, monkeypatch):
    passages, queries = data
    paths = _shard_indexes(passages[:100], 2, tmp_path)

    def refuse(res, device, index):
        raise RuntimeError("Error in faiss::gpu::index_cpu_to_gpu at GpuCloner.cpp:1: "
                           "This index type is not implemented")

    monkeypatch.setattr(faiss, "index_cpu_to_gpu", refuse)
    with pytest.raises(UMRError, match=r"shard-0-of-2\.faiss: faiss could not copy the index to GPU 0 "
                                      r"\(This index type is not implemented\): .*retrieval\.index"):
        search_shards(queries[:5], paths, TOP_K, gpu=True)
