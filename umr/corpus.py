"""Random access to a DPR TSV corpus by passage id or row, without loading it.

A paper-scale corpus (21M English / 44M multilingual passages, 13-29 GB) does not
fit comfortably in a Python dict, so the corpus is read through a byte-offset
table: one int64 offset per row plus the ids as a sorted bytes array for lookup.
The table is built once by the `corpus_offsets` rule (`python -m umr.corpus`) and
shared by every stage that needs passage texts (rerank, evaluate, distill).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tqdm import tqdm

from umr.errors import InputFileError, UMRError
from umr.io import atomic_file, log, run_cli
from umr.records import Passage, iter_dpr_tsv


def build_offsets(tsv: str | Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scan a DPR TSV once, validating every row; return (ids as bytes, byte offsets)."""
    tsv = Path(tsv)
    ids: list[bytes] = []
    offsets: list[int] = []
    # iter_dpr_tsv validates (columns, UTF-8, duplicates); a second raw pass records offsets.
    for _ in tqdm(iter_dpr_tsv(tsv), desc=f"validate {tsv.name}", unit=" passages", disable=not progress, mininterval=5):
        pass
    with open(tsv, "rb") as handle:
        pos = 0
        for line_no, raw in enumerate(handle, start=1):
            if raw.strip() and not (line_no == 1 and raw.startswith(b"id\t")):
                ids.append(raw.split(b"\t", 1)[0])
                offsets.append(pos)
            pos += len(raw)
    return np.array(ids, dtype=bytes), np.array(offsets, dtype=np.int64)


def save_offsets(path: str | Path, ids: np.ndarray, offsets: np.ndarray) -> None:
    with atomic_file(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, ids=ids, offsets=offsets)


class Corpus:
    """A DPR TSV corpus opened for random access.

    `Corpus(tsv)` scans the file; `Corpus(tsv, offsets_npz)` uses a prebuilt table.
    Row order is file order, which is also the order of the encoded embeddings.
    """

    def __init__(self, tsv: str | Path, offsets: str | Path | None = None):
        self.path = Path(tsv)
        if not self.path.exists():
            raise UMRError(f"{self.path}: corpus file not found")
        if offsets is not None:
            try:
                with np.load(offsets) as table:
                    self.ids, self.offsets = table["ids"], table["offsets"]
            except (OSError, ValueError, KeyError) as err:
                raise UMRError(f"{offsets}: unreadable corpus offset table ({err}); delete it and rerun") from None
        else:
            self.ids, self.offsets = build_offsets(self.path, progress=False)
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[self._order]
        self._handle = open(self.path, "rb")

    def __len__(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Corpus":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read_row(self, row: int) -> Passage:
        self._handle.seek(int(self.offsets[row]))
        line = self._handle.readline().decode("utf-8").rstrip("\r\n")
        fields = line.split("\t")
        if len(fields) != 3:
            raise InputFileError(self.path, "corpus changed since its offset table was built", None)
        pid, text, title = fields
        if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
            text = text[1:-1].replace('""', '"')
        return Passage(pid, title, text)

    def rows_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row numbers of passage ids; an unknown id is an error."""
        keys = np.array([i.encode("utf-8") for i in ids], dtype=self._sorted_ids.dtype if len(ids) else bytes)
        pos = np.searchsorted(self._sorted_ids, keys)
        pos = np.minimum(pos, len(self._sorted_ids) - 1)
        found = self._sorted_ids[pos] == keys
        if not np.all(found):
            missing = ids[int(np.argmin(found))]
            raise UMRError(f"{self.path}: passage id {missing!r} not in corpus")
        return self._order[pos]

    def by_rows(self, rows: Iterable[int]) -> list[Passage]:
        return [self._read_row(int(r)) for r in rows]

    def get_many(self, ids: Sequence[str]) -> list[Passage]:
        return self.by_rows(self.rows_of(list(ids)))

    def __getitem__(self, pid: str) -> Passage:
        return self.get_many([pid])[0]

    def iter_rows(self, start: int = 0, stop: int | None = None):
        """Passages of rows [start, stop) in file order (sequential read)."""
        stop = len(self) if stop is None else min(stop, len(self))
        if start >= stop:
            return
        self._handle.seek(int(self.offsets[start]))
        for row in range(start, stop):
            yield self._read_row(row)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.corpus", description="Validate a DPR TSV corpus and build its offset table.")
    p.add_argument("--tsv", required=True, help="DPR TSV corpus (id, text, title)")
    p.add_argument("--out", required=True, help="output .npz offset table")
    return p


def _main(args: argparse.Namespace) -> None:
    ids, offsets = build_offsets(args.tsv)
    save_offsets(args.out, ids, offsets)
    log.info("%s: %d passages indexed -> %s", args.tsv, len(ids), args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
