"""Memory that stays bounded at 44 M passages (issue 13): the same results as the unbounded code.

- `umr.index.build_index` adds a memory-mapped shard in blocks (no full fp32 copy, no doubling
  of faiss's code vector) and builds the same index as one `add`;
- `umr.io.fingerprint_items` hashes a sequence item by item and equals `fingerprint(list)`, so
  distillation checkpoints keyed by it still resume;
- `umr.records.DuplicateIdCheck` finds a duplicate passage id from 8-byte hashes, with the
  error of the set-based check, hash collisions included.
"""

from __future__ import annotations

import tracemalloc

import faiss
import numpy as np
import pytest
import torch

from umr.distill import DistillSettings, TrainingExample, run_fingerprint
from umr.errors import InputFileError
from umr.index import build_index, load_embeddings
from umr.io import fingerprint, fingerprint_items
from umr.records import DuplicateIdCheck, Passage, Question, iter_dpr_tsv, write_dpr_tsv


# -- index ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "SQfp16", "IVF8,Flat", "IVF8,PQ4x4"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_blocked_add_builds_the_same_index_from_a_memory_map(tmp_path, factory, dtype):
    vectors = np.random.default_rng(0).normal(size=(3000, 16)).astype(dtype)
    np.save(tmp_path / "shard.npy", vectors)
    mapped = load_embeddings(tmp_path / "shard.npy")
    one = build_index(vectors, factory, add_block=len(vectors))
    blocked = build_index(mapped, factory, add_block=256)  # 12 blocks, the last one short
    assert blocked.ntotal == len(vectors)
    np.testing.assert_array_equal(faiss.serialize_index(blocked), faiss.serialize_index(one))
    if factory == "Flat":
        np.testing.assert_array_equal(blocked.reconstruct_n(0, len(vectors)), vectors.astype(np.float32))


def test_blocked_add_holds_the_index_plus_one_block(tmp_path):
    """An fp16 shard that is 64 MB as fp32: the old code converted it whole (a 64 MB NumPy copy
    beside the 64 MB index). tracemalloc sees NumPy's allocations, not faiss's own buffer."""
    n, dim, block = 250_000, 64, 8192  # index 64 MB, one fp32 block 2 MB
    np.save(tmp_path / "shard.npy", np.ones((n, dim), dtype=np.float16))
    mapped = load_embeddings(tmp_path / "shard.npy")
    tracemalloc.start()
    try:
        index = build_index(mapped, "Flat", add_block=block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert index.ntotal == n
    # faiss's own buffer is not traced; what is traced is NumPy's: one fp32 block (and its fp16 read)
    assert peak < 4 * block * dim * 4, peak


# -- fingerprint ----------------------------------------------------------------------------------
def test_fingerprint_items_equals_the_fingerprint_of_the_list():
    cases = [[], [1], [("1", "Title", "a\ttext\nwith \"quotes\"", ["0.5", "-1e-05"])],
             [{"b": 1, "a": [1.5, None, True]}, "ünïcödé 日本語", ("x", 3)], [(i, str(i)) for i in range(2000)]]
    for items in cases:
        assert fingerprint_items(iter(items)) == fingerprint(items)


def test_run_fingerprint_is_streamed_deterministic_and_covers_every_field():
    settings, device = DistillSettings(), torch.device("cpu")
    examples = [TrainingExample(Question("q1", "Missä?", "fi"), ["p1", "p2"], [2.0, 1.0]),
                TrainingExample(Question("q2", "どこ?", "ja"), ["p2", "p1"], [0.5, 0.25])]
    passages = {"p2": Passage("p2", "T2", "text two"), "p1": Passage("p1", "T1", "text one")}
    key = run_fingerprint("student", examples, passages, settings, 2, device)
    # the value before streaming: fingerprint of the whole lists (checkpoints of older runs resume)
    old = fingerprint({
        "student": ["student", "student"], "settings": __import__("dataclasses").asdict(settings), "top_k": 2,
        "device": "cpu",
        "examples": fingerprint([(e.question.id, e.question.text, e.passages, [repr(x) for x in e.scores])
                                 for e in examples]),
        "passages": fingerprint([(p.id, p.title, p.text) for _, p in sorted(passages.items())]),
    })
    assert key == old
    assert run_fingerprint("student", examples, dict(reversed(passages.items())), settings, 2, device) == key
    changed = [
        [TrainingExample(Question("q1b", "Missä?", "fi"), ["p1", "p2"], [2.0, 1.0]), examples[1]],
        [TrainingExample(Question("q1", "Missä??", "fi"), ["p1", "p2"], [2.0, 1.0]), examples[1]],
        [TrainingExample(Question("q1", "Missä?", "fi"), ["p2", "p1"], [2.0, 1.0]), examples[1]],
        [TrainingExample(Question("q1", "Missä?", "fi"), ["p1", "p2"], [2.0, 1.0000001]), examples[1]],
        examples[::-1],
    ]
    for other in changed:
        assert run_fingerprint("student", other, passages, settings, 2, device) != key
    for field in range(3):
        edited = {pid: Passage(*(v + "x" if i == field else v for i, v in enumerate((p.id, p.title, p.text))))
                  for pid, p in passages.items()}
        assert run_fingerprint("student", examples, edited, settings, 2, device) != key


# -- duplicate passage ids ------------------------------------------------------------------------
def _check(path) -> None:
    ids = DuplicateIdCheck(path)
    for p in iter_dpr_tsv(path, unique_ids=False):
        ids.add(p.id)
    ids.check()


@pytest.mark.parametrize("colliding", [False, True])
def test_duplicate_check_matches_the_set_based_error(tmp_path, monkeypatch, colliding):
    monkeypatch.setattr(DuplicateIdCheck, "BLOCK", 7)  # many blocks
    if colliding:  # every id hashes to its length: collisions everywhere, only exact ids may count
        monkeypatch.setattr(DuplicateIdCheck, "_hash", staticmethod(len))
    passages = [Passage(str(i), f"T{i}", f"text {i}") for i in range(100)]
    path = tmp_path / "c.tsv"
    write_dpr_tsv(path, passages)
    _check(path)  # unique ids, colliding hashes or not: no error

    write_dpr_tsv(path, passages[:40] + [Passage("77", "T", "a copy's id")] + passages[40:] + [passages[5]])
    with pytest.raises(InputFileError) as reference:
        list(iter_dpr_tsv(path))
    with pytest.raises(InputFileError) as err:
        _check(path)
    # the first line whose id occurred before: passage 77 at line 80 (header, 40 passages, the
    # inserted "77" at line 42, passages 40.. from line 43), not the later repeat of passage 5
    assert str(err.value) == str(reference.value) == f"{path}:80: duplicate passage id '77'"


def test_duplicate_check_keeps_8_bytes_per_id_not_a_set():
    n = 200_000
    ids = DuplicateIdCheck("unused.tsv")
    tracemalloc.start()
    try:
        for i in range(n):
            ids.add(f"passage-{i}")
        ids.check()  # no duplicate: the file is not read
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # hashes 8 B + their sorted copy 8 B + a 1 B mask per id, plus one 8 MB block; a set of the
    # same ids would need ~90 B per id (18 MB)
    assert peak < n * 17 + DuplicateIdCheck.BLOCK * 8 + 1_000_000, peak
