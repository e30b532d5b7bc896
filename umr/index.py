"""Stage: build a faiss index over one shard of passage embeddings.

Each corpus shard gets its own index, so memory stays bounded by one shard while
building, and search can visit shards one at a time and merge their top-k exactly
(`umr.retrieve`). The default is exact inner-product search (`Flat`, as UMR used);
any faiss factory string (`IVF4096,Flat`, `IVF4096,PQ64`, `HNSW32`) trades recall for
memory and speed at paper scale.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import faiss
import numpy as np

from umr.errors import UMRError
from umr.io import atomic_file, log, run_cli


def _faiss_reason(err: Exception) -> str:
    """faiss's message without its C++ location prefix ("Error in <function> at <file>:<line>: ")."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^Error in .*? at [^ ]+:\d+: (Error: )?", "", text)


def build_index(vectors: np.ndarray, factory: str = "Flat", train_sample: int = 262_144, seed: int = 0) -> faiss.Index:
    """An inner-product faiss index over `vectors` (trained on a sample when the type needs it)."""
    if vectors.ndim != 2 or len(vectors) == 0:
        raise UMRError(f"embeddings of shape {vectors.shape}: expected a non-empty [passages, dimension] array")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    try:
        index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            sample = vectors if len(vectors) <= train_sample else vectors[rng.choice(len(vectors), train_sample, replace=False)]
            index.train(sample)
    except RuntimeError as err:
        raise UMRError(f"faiss index {factory!r} (config key retrieval.index) cannot be built over {len(vectors)} "
                       f"vectors of dimension {vectors.shape[1]}: {_faiss_reason(err)}") from None
    index.add(vectors)
    return index


def read_index(path: str | Path) -> faiss.Index:
    """Read a faiss index; a missing or corrupt file is a one-line error naming it."""
    path = Path(path)
    if not path.exists():
        raise UMRError(f"{path}: faiss index not found")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as err:
        raise UMRError(f"{path}: corrupt or unreadable faiss index ({_faiss_reason(err)}); delete it and rerun") from None


def write_index(index: faiss.Index, path: str | Path) -> None:
    with atomic_file(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_embeddings(path: str | Path) -> np.ndarray:
    path = Path(path)
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise UMRError(f"{path}: unreadable embeddings ({err})") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.index", description="Build a faiss index over one shard of embeddings.")
    p.add_argument("--embeddings", required=True, help=".npy embeddings of one corpus shard")
    p.add_argument("--factory", default="Flat", help="faiss index factory string (inner product)")
    p.add_argument("--out", required=True, help="output .faiss file")
    return p


def _main(args: argparse.Namespace) -> None:
    vectors = load_embeddings(args.embeddings)
    index = build_index(vectors, args.factory)
    write_index(index, args.out)
    log.info("indexed %d vectors of dimension %d (%s) -> %s", index.ntotal, index.d, args.factory, args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
