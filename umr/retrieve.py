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

import numpy as np

from umr.errors import UMRError
from umr.index import read_index
from umr.io import atomic_file, log, run_cli, set_threads
from umr.records import Run, read_questions, write_trec_run


def search_shards(queries: np.ndarray, index_paths: Sequence[str], top_k: int, gpu: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exact merge of per-shard top-k: returns (scores, global rows), each [n_queries, top_k]."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    all_scores, all_rows, offset = [], [], 0
    for path in index_paths:
        index = read_index(path)
        if index.d != queries.shape[1]:
            raise UMRError(f"{path}: index dimension {index.d} does not match the query encoder's {queries.shape[1]}")
        if gpu:
            import faiss

            index = faiss.index_cpu_to_all_gpus(index)
        k = min(top_k, index.ntotal)
        scores, rows = index.search(queries, k)
        all_scores.append(scores)
        all_rows.append(np.where(rows >= 0, rows + offset, -1))
        offset += index.ntotal
        del index
    if offset < top_k:
        raise UMRError(f"top-k {top_k} is larger than the corpus ({offset} passages)")
    scores = np.concatenate(all_scores, axis=1)
    rows = np.concatenate(all_rows, axis=1)
    # Sort by score descending, then row ascending, so ties do not depend on sharding.
    order = np.lexsort((rows, -scores), axis=1)[:, :top_k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)


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
    p.add_argument("--gpu-search", action="store_true", help="search with faiss on all GPUs")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="dense", help="run tag (last TREC column)")
    p.add_argument("--out", required=True, help="output TREC run")
    return p


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    from umr.encode import DualEncoder, device_for, encode_questions  # torch only where needed
    from umr.fastlm import use_onednn_linear

    questions = read_questions(args.questions, args.languages)
    encoder = DualEncoder.load(args.retriever, args.max_length)
    encoder.query_model.to(device_for(args.device))
    use_onednn_linear(encoder.query_model)  # inference only: the same products, faster on CPU
    vectors = encode_questions(encoder, [q.text for q in questions], args.batch_size)
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
