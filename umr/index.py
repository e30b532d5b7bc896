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


# Rows converted to fp32 and added per index.add call: 262,144 x 768 x 4 B = 0.8 GB. Converting
# a whole fp16 shard at once would hold a second fp32 copy of it beside the index (8.4 GB for a
# Flat shard of XOR-Full: 44 M / 16 passages x 768 x 4 B).
ADD_BLOCK = 262_144


def build_index(vectors: np.ndarray, factory: str = "Flat", train_sample: int = 262_144, seed: int = 0,
                add_block: int = ADD_BLOCK) -> faiss.Index:
    """An inner-product faiss index over `vectors` (trained on a sample when the type needs it).

    `vectors` may be a memory map (fp32 or fp16): it is read `add_block` rows at a time, so
    peak memory is the index plus one fp32 block (a Flat shard of XOR-Full: 8.4 GB + 0.8 GB),
    not the index plus a full in-memory copy of the embeddings.
    """
    if vectors.ndim != 2 or len(vectors) == 0:
        raise UMRError(f"embeddings of shape {vectors.shape}: expected a non-empty [passages, dimension] array")
    n, dim = vectors.shape
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            # The sample (262,144 x 768 x 4 B = 0.8 GB) is the only copy training needs.
            sample = vectors if n <= train_sample else vectors[rng.choice(n, train_sample, replace=False)]
            index.train(np.ascontiguousarray(sample, dtype=np.float32))
    except RuntimeError as err:
        raise UMRError(f"faiss index {factory!r} (config key retrieval.index) cannot be built over {n} "
                       f"vectors of dimension {dim}: {_faiss_reason(err)}") from None
    if isinstance(index, faiss.IndexFlatCodes):
        # Flat/SQ/PQ keep all codes in one vector that add() grows; grown block by block it would
        # reallocate by doubling and briefly hold the old and the new buffer (up to 2x the index).
        # Allocating the final size first (resize up, then down: the capacity stays) avoids that.
        index.codes.resize(n * index.code_size)
        index.codes.resize(0)
    for start in range(0, n, add_block):
        # A contiguous fp32 slice of a memory map is a view (no copy); fp16 is converted per block.
        index.add(np.ascontiguousarray(vectors[start:start + add_block], dtype=np.float32))
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
