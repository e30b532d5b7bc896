"""Stage: retrieve the top-k passages of every question with a dense retriever.

Questions are encoded with the retriever's query encoder; each shard index is
searched in turn and the per-shard top-k lists are merged exactly (a passage's
global row is its shard's first row plus its row in the shard), so S shards give
the same top-k as one index. Ties break towards the lower row, deterministically.
The output is a TREC run file (all languages of the split, best first).
"""

from __future__ import annotations

import argparse
from typing import Sequence

import faiss
import numpy as np

from umr.errors import UMRError
from umr.index import _faiss_reason, read_index
from umr.io import atomic_file, log, run_cli, set_threads
from umr.records import Run, read_questions, write_trec_run


# faiss's GPU k-selection handles k <= 2048 (GPU_MAX_SELECTION_K in faiss/gpu/utils/DeviceDefs.cuh,
# faiss >= 1.7.3; not exported to Python); a larger k fails inside the search.
GPU_MAX_K = 2048
# Queries per search call: the result buffers of one call are block x k (4096 x 2048 x 12 B =
# 100 MB at GPU_MAX_K, 4.9 MB at k = 100), whatever the number of questions.
QUERY_BLOCK = 4096


def check_gpu_search(top_k: int) -> None:
    """`--gpu-search` needs faiss-gpu, a visible GPU and k within faiss's GPU limit (checked before encoding)."""
    if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        raise UMRError("retrieval.gpu_search is true but faiss has no GPU support or sees no GPU: install "
                       "faiss-gpu (envs/gpu.yaml) and give the retrieve rule a GPU, or set retrieval.gpu_search: false")
    if top_k > GPU_MAX_K:
        raise UMRError(f"retrieval.top_k {top_k} is above faiss's GPU limit of {GPU_MAX_K}: "
                       "lower it or set retrieval.gpu_search: false")


def _merge(scores: np.ndarray, rows: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    # Score descending, then row ascending, so ties do not depend on sharding. Rows are unique
    # (a strict order), so the top-k of (top-k so far + a new shard) is the top-k of the union.
    order = np.lexsort((rows, -scores), axis=1)[:, :top_k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


def search_shards(queries: np.ndarray, index_paths: Sequence[str], top_k: int, gpu: bool = False,
                  query_block: int = QUERY_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact merge of per-shard top-k: returns (scores, global rows), each [n_queries, top_k].

    Shards are visited one at a time and merged into a running top-k, so memory holds one
    shard index plus n_queries x 2 x top_k results. With `gpu`, each shard is copied to GPU 0
    (one `StandardGpuResources`), searched there, and freed before the next one is read:
    GPU memory holds one shard (a Flat shard of 44 M / 16 passages x 768 x 4 B = 8.4 GB).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    n = len(queries)
    res = None
    if gpu:
        check_gpu_search(top_k)
        res = faiss.StandardGpuResources()  # one GPU context (cuBLAS handle, streams, scratch) for all shards
    best_scores = np.zeros((n, 0), dtype=np.float32)
    best_rows = np.zeros((n, 0), dtype=np.int64)
    offset = 0
    for path in index_paths:
        index = read_index(path)
        if index.d != queries.shape[1]:
            raise UMRError(f"{path}: index dimension {index.d} does not match the query encoder's {queries.shape[1]}")
        ntotal = index.ntotal
        if res is not None:
            try:
                index = faiss.index_cpu_to_gpu(res, 0, index)  # the CPU copy is dropped here: host RAM holds one shard
            except RuntimeError as err:
                raise UMRError(f"{path}: faiss could not copy the index to GPU 0 ({_faiss_reason(err)}): an index "
                               "type with no GPU version (retrieval.index) or a shard larger than the GPU's memory "
                               "(raise retrieval.shards); or set retrieval.gpu_search: false") from None
        k = min(top_k, ntotal)
        scores = np.empty((n, k), dtype=np.float32)
        rows = np.empty((n, k), dtype=np.int64)
        for start in range(0, n, query_block):
            stop = min(start + query_block, n)
            scores[start:stop], rows[start:stop] = index.search(queries[start:stop], k)
        # Free the shard (GPU memory with `gpu`) before the next one is read.
        del index
        rows = np.where(rows >= 0, rows + offset, -1)
        best_scores, best_rows = _merge(np.concatenate([best_scores, scores], axis=1),
                                        np.concatenate([best_rows, rows], axis=1), top_k)
        offset += ntotal
    if offset < top_k:
        raise UMRError(f"top-k {top_k} is larger than the corpus ({offset} passages)")
    return best_scores, best_rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.retrieve", description="Dense retrieval of a question file into a TREC run.")
    p.add_argument("--retriever", required=True, help="hub name, checkpoint dir, or distilled retriever dir")
    p.add_argument("--questions", required=True, help="XOR-TyDi JSONL questions")
    p.add_argument("--languages", nargs="+", required=True, help="languages to retrieve for (others are an error)")
    p.add_argument("--index", nargs="+", required=True, help="shard indexes, in corpus order")
    p.add_argument("--offsets", required=True, help="corpus offset table (.npz): maps rows to passage ids")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--gpu-search", action="store_true",
                   help="search on GPU 0 with faiss-gpu, one shard in GPU memory at a time")
    p.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp16", "fp32"),
                   help="compute precision of the question encoder (umr.precision; auto: bf16 on A100/H100, fp16 on "
                        "older GPUs, fp32 on CPU); the query embeddings are fp32 either way")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="dense", help="run tag (last TREC column)")
    p.add_argument("--out", required=True, help="output TREC run")
    return p


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    from umr.encode import DualEncoder, device_for, encode_questions  # torch only where needed
    from umr.fastlm import use_onednn_linear
    from umr.precision import resolve_precision

    if args.gpu_search:
        check_gpu_search(args.top_k)  # fail before encoding the questions, not after
    questions = read_questions(args.questions, args.languages)
    encoder = DualEncoder.load(args.retriever, args.max_length)
    device = device_for(args.device)
    precision = resolve_precision(args.precision, device)
    encoder.query_model.to(device)
    if not precision.mixed:  # fp32 kernels: not for autocast's bf16/fp16 activations (see umr.encode)
        use_onednn_linear(encoder.query_model)  # inference only: the same products, faster on CPU
    vectors = encode_questions(encoder, [q.text for q in questions], args.batch_size, precision)
    log.info("searching %d questions in %d shard(s), top-%d", len(questions), len(args.index), args.top_k)
    scores, rows = search_shards(vectors, args.index, args.top_k, args.gpu_search)
    with np.load(args.offsets) as table:
        ids = table["ids"]
    run: Run = {q.id: [(ids[r].decode("utf-8"), float(s)) for s, r in zip(scores[i], rows[i])]
                for i, q in enumerate(questions)}
    with atomic_file(args.out) as tmp:
        write_trec_run(tmp, run, args.tag)
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
