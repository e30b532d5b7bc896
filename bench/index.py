"""Item 4: index and search (umr.index, umr.retrieve.search_shards) against NumPy brute force,
and the peak memory of encode + index as the corpus grows 10x.

Memory: each corpus size runs in a fresh process (`--worker`) that does what the
pipeline's encode_corpus and build_index jobs do for `SHARDS` shards: embeddings
streamed to one .npy per shard (umr.encode.encode_corpus_shard), then one faiss
index per shard built from the memory-mapped .npy. The figure is the peak RSS the
encoding and indexing add (bench.common.PeakMemory: the kernel's RSS high-water mark,
reset after imports, model load and the corpus offset table, minus the RSS then).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

SHARDS = 2  # config.yaml retrieval.shards
TOP_K = 100  # config.yaml retrieval.top_k
QUERY_REPEAT = 8  # the 280 toy training questions, 8 times over: long enough to time


def write_subsets(corpus_tsv: Path, out_dir: Path, sizes: list[int], seed: int = 0) -> list[Path]:
    """Corpora of `sizes` passages: nested random samples of `corpus_tsv`, in file order."""
    from umr.records import iter_dpr_tsv, write_dpr_tsv

    passages = list(iter_dpr_tsv(corpus_tsv))
    order = list(range(len(passages)))
    random.Random(seed).shuffle(order)
    paths = []
    for n in sizes:
        path = out_dir / f"corpus-{n}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dpr_tsv(path, [passages[i] for i in sorted(order[:n])])
        paths.append(path)
    return paths


def worker(args: dict[str, Any]) -> dict[str, Any]:
    """Encode + index one corpus the pipeline's way, in this (fresh) process; returns times and RSS."""
    from bench.common import PeakMemory, quiet

    quiet()
    from umr.corpus import Corpus
    from umr.encode import DualEncoder, encode_corpus_shard, shard_rows
    from umr.index import build_index, load_embeddings, write_index

    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    encoder = DualEncoder.load(args["retriever"])
    with Corpus(args["corpus"]) as corpus:
        memory = PeakMemory().start()
        start = time.perf_counter()
        for shard in range(SHARDS):
            encode_corpus_shard(encoder, corpus, shard, SHARDS, out / f"shard-{shard}.npy")
        encode_s = time.perf_counter() - start
        after_encode = memory.peak()
        start = time.perf_counter()
        for shard in range(SHARDS):
            write_index(build_index(load_embeddings(out / f"shard-{shard}.npy")), out / f"shard-{shard}.faiss")
        index_s = time.perf_counter() - start
        result = memory.result()
        # After the measurement: the activations of a batch grow with its padded size (rows x longest
        # passage), so report the largest padded batch encode_ids formed (length-sorted, 128 rows).
        lengths = [len(ids) for ids in encoder.tokenize_passages(list(corpus.iter_rows()))]
        n = len(corpus)
        largest = 0
        for shard in range(SHARDS):
            first, last = shard_rows(n, shard, SHARDS)
            ordered = sorted(lengths[first:last])
            largest = max([largest] + [len(ordered[a : a + 128]) * ordered[a : a + 128][-1]
                                       for a in range(0, len(ordered), 128)])
    return {"passages": n, "shards": SHARDS, "encode_s": encode_s, "index_s": index_s, "after_encode_peak_mb": after_encode,
            "longest_passage_tokens": max(lengths), "mean_passage_tokens": sum(lengths) / n,
            "largest_batch_tokens": largest, **result}


def numpy_top_k(queries, passages, k: int):
    """The naive reference: every score, then a full stable sort per query (ties to the lower row)."""
    import numpy as np

    scores = queries @ passages.T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


def run(inputs, runs: int, threads: int, max_passages: int | None = None) -> dict[str, Any]:
    import numpy as np

    from bench.common import alternate, run_worker
    from umr.encode import DualEncoder, encode_questions
    from umr.records import read_questions
    from umr.retrieve import search_shards

    corpus_tsv = inputs.data["corpus_xor_full"]
    n_full = sum(1 for _ in open(corpus_tsv, encoding="utf-8")) - 1  # minus the header row
    n_full = min(n_full, max_passages or n_full)
    sizes = [round(n_full / 10), round(n_full / 10**0.5), n_full]
    corpora = write_subsets(corpus_tsv, inputs.workdir / "index-bench", sizes)
    memory = []
    for n, path in zip(sizes, corpora):
        out = inputs.workdir / "index-bench" / f"shards-{n}"
        memory.append(run_worker("bench.index", {"corpus": str(path), "retriever": str(inputs.retriever),
                                                 "out": str(out)}, threads))
    # Search: the largest corpus, the pipeline's shard indexes vs brute force over the same embeddings.
    shards = inputs.workdir / "index-bench" / f"shards-{n_full}"
    index_paths = [str(shards / f"shard-{s}.faiss") for s in range(SHARDS)]
    passages = np.concatenate([np.load(shards / f"shard-{s}.npy") for s in range(SHARDS)])
    encoder = DualEncoder.load(str(inputs.retriever))
    questions = read_questions(inputs.data["xor_full_train"])
    vectors = encode_questions(encoder, [q.text for q in questions])
    queries = np.ascontiguousarray(np.tile(vectors, (QUERY_REPEAT, 1)))
    timing = alternate(lambda: numpy_top_k(queries, passages, TOP_K),
                       lambda: search_shards(queries, index_paths, TOP_K), runs)
    (ref_scores, ref_rows), (faiss_scores, faiss_rows) = timing["reference_result"], timing["optimised_result"]
    differ = ref_rows != faiss_rows
    # A differing row is acceptable only as a tie (equal scores up to float32 rounding of the dot
    # product: both BLAS sum in another order) broken the other way: same score at that rank.
    tie_gap = float(np.abs(ref_scores - faiss_scores)[differ].max()) if differ.any() else 0.0
    rounding = 1e-6 * float(np.abs(ref_scores).max())
    return {
        "corpus": "toy XOR-Full corpus (nested random samples)",
        "memory": memory,
        "search": {
            "passages": int(len(passages)), "queries": int(len(queries)), "top_k": TOP_K, "shards": SHARDS,
            "numpy_qps": len(queries) / timing["reference_median_s"],
            "faiss_qps": len(queries) / timing["optimised_median_s"],
            "speedup": timing["reference_median_s"] / timing["optimised_median_s"],
            "numpy_s": timing["reference_s"], "faiss_s": timing["optimised_s"],
            "identical_rows": bool(not differ.any()), "differing_positions": int(differ.sum()),
            "max_abs_score_diff": float(np.abs(ref_scores - faiss_scores).max()), "differing_max_score_gap": tie_gap,
            "float32_rounding": rounding, "same_top_k": bool(not differ.any() or tie_gap <= rounding),
        },
        # For item 1: the dense top-k of a rerank job comes from these indexes (rows of this corpus).
        "index_paths": index_paths, "index_corpus": str(corpora[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", required=True, help="JSON arguments (internal)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from bench.common import set_threads

    set_threads(args.threads)
    print(json.dumps(worker(json.loads(args.worker))))


if __name__ == "__main__":
    main()
