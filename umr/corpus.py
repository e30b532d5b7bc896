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
from umr.records import Passage, iter_dpr_rows, parse_dpr_line


def build_offsets(tsv: str | Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Scan a DPR TSV once, validating every row; return (ids as bytes, byte offsets)."""
    tsv = Path(tsv)
    ids: list[bytes] = []
    offsets: list[int] = []
    # The same parser as every other reader: ids are the csv-unquoted first fields.
    rows = iter_dpr_rows(tsv)
    for offset, passage in tqdm(rows, desc=f"index {tsv.name}", unit=" passages", disable=not progress, mininterval=5):
        ids.append(passage.id.encode("utf-8"))
        offsets.append(offset)
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

    def __init__(self, tsv: str | Path, offsets: str | Path | None = None,
                 source: str | Path | Sequence[str | Path] | None = None):
        """`source`: the file(s) the looked-up ids come from (a run), named when one is unknown."""
        self.path = Path(tsv)
        self.source = source
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
        try:
            line = self._handle.readline().decode("utf-8")
        except UnicodeDecodeError:
            line = ""
        fields = parse_dpr_line(line, self.path, None)
        # A corpus edited after its offset table was built would silently return other passages.
        if len(fields) != 3 or fields[0].encode("utf-8") != self.ids[row]:
            raise InputFileError(self.path, f"corpus changed since its offset table was built (row {row} at byte "
                                            f"{int(self.offsets[row])} is not passage {self.ids[row].decode()!r}); "
                                            "delete the table and rerun", None)
        pid, text, title = fields
        return Passage(pid, title, text)

    def rows_of(self, ids: Sequence[str], source: str | Path | Sequence[str | Path] | None = None) -> np.ndarray:
        """Row numbers of passage ids; an unknown id is an error naming it and `source` (the run)."""
        ids = list(ids)
        # Keys keep their own width: cast to the corpus ids' width, "123" would be cut to "12".
        keys = np.array([i.encode("utf-8") for i in ids], dtype=bytes)
        if not len(keys):
            return np.zeros(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_ids, keys), len(self._sorted_ids) - 1)
        found = self._sorted_ids[pos] == keys
        if not np.all(found):
            missing = ids[int(np.argmin(found))]
            source = source if source is not None else self.source
            if source is None:
                raise UMRError(f"{self.path}: passage id {missing!r} not in corpus")
            if not isinstance(source, (str, Path)):
                source = ", ".join(map(str, source))
            raise InputFileError(source, f"passage id {missing!r} is not in the corpus {self.path} "
                                         "(was this run made on another collection?)")
        return self._order[pos]

    def by_rows(self, rows: Iterable[int]) -> list[Passage]:
        return [self._read_row(int(r)) for r in rows]

    def get_many(self, ids: Sequence[str],
                 source: str | Path | Sequence[str | Path] | None = None) -> list[Passage]:
        """Passages of `ids` in that order; `source` (default: the corpus's) is named if one is unknown."""
        return self.by_rows(self.rows_of(ids, source))

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
