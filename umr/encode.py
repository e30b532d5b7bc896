"""Stage: encode passages and questions with a dual-encoder retriever.

The retriever is two *untied* BERT-style encoders (query and passage) with masked
mean pooling and no normalisation, relevance = dot product (mContriever's
recipe; CLS pooling silently breaks it). A retriever is either

- a single checkpoint (hub name such as `facebook/mcontriever`, or a local
  `save_pretrained` directory such as the toy model), used for both encoders, or
- a directory written by distillation with `query_encoder/` and `passage_encoder/`.

Passages are encoded as the tokenizer pair (title, text); questions as their text.
Batches are formed from length-sorted inputs with dynamic padding, so short
passages do not pay for the 256-token maximum (the reference code pads to 256).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from safetensors import SafetensorError
from tqdm import tqdm
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from umr.corpus import Corpus
from umr.errors import UMRError
from umr.fastlm import use_onednn_linear
from umr.io import PartsDir, atomic_file, log, path_identity, run_cli, set_threads
from umr.precision import PRECISIONS, Precision, resolve_precision
from umr.records import Passage

QUERY_DIR, PASSAGE_DIR = "query_encoder", "passage_encoder"


# Tokenizer files in the order AutoTokenizer prefers them: a fast tokenizer's tokenizer.json, else the
# vocabulary its class converts on loading (mT5/mT0 ship only spiece.model, mContriever BERT's vocab.txt).
TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "vocab.json")
SENTENCEPIECE_FILES = ("spiece.model", "sentencepiece.bpe.model")
# Weights files in the order `from_pretrained` prefers them.
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# Text in the seven XOR scripts and English: a sentencepiece tokenizer's conversion is checked on it.
PROBE_TEXT = ("Marie Curie (1867) won 2 Nobel prizes? Мария Кюри, ماري كوري, মারি কুরি, Marie Curie syntyi, "
              "マリ・キュリー, 마리 퀴리, మేరీ క్యూరీ")


def load_pretrained(name_or_path: str, what: str = "model", model_class: type = AutoModel,
                    dtype: torch.dtype = torch.float32,
                    **kwargs: Any) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A model and its tokenizer by hub name or local directory; a bad checkpoint is a one-line UMRError.

    `what` names the model in the message ("model", "reranker", ...). Weights are
    loaded in `dtype` (float32 unless asked: transformers 5 would otherwise keep the
    checkpoint's own). Checkpoints in the hub's older formats load too: a tokenizer
    from `vocab.txt` (BERT) or a sentencepiece `spiece.model` (mT5; converting it
    needs `protobuf`) when there is no `tokenizer.json`, weights from `pytorch_model.bin`.
    A BERT encoder is built without its pooler (pooling is a masked mean here, and
    mContriever's checkpoint has no pooler weights); any other missing, unexpected or
    resized weight is reported. One INFO line says what was loaded from which files:
    `loaded <what> <path>: tokenizer <class> from <file>; model <class> <dtype> from <weights file>`.
    A truncated or corrupt weights file raises safetensors' or torch's own error types, caught here too.
    """
    path = Path(name_or_path)
    looks_local = path.is_absolute() or name_or_path.startswith((".", "results/")) or path.exists()
    if looks_local:
        if not (path / "config.json").exists():
            raise UMRError(f"{name_or_path}: {what} directory not found or has no config.json")
        _check_tokenizer_files(path, name_or_path, what)
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        if model_class is AutoModel and config.model_type in POOLER_MODEL_TYPES:
            kwargs.setdefault("add_pooling_layer", False)
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        with _quiet_load_report():
            model, info = model_class.from_pretrained(name_or_path, dtype=dtype, output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UMRError(f"{name_or_path}: cannot load {what} ({first_line})") from None
    source = path if looks_local else _snapshot_dir(name_or_path)
    _report_weights(info, name_or_path, what)
    _check_tokenizer(tokenizer, source, name_or_path, what)
    # A token id past the embedding matrix fails deep inside a job as "index out of range in self".
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise UMRError(f"{name_or_path}: cannot load {what}: its tokenizer has {len(tokenizer)} tokens but the "
                       f"model's embedding matrix only {rows} rows (config.json vocab_size); tokenizer and "
                       "weights do not belong together")
    log.info("loaded %s %s: tokenizer %s from %s; model %s %s from %s", what, name_or_path, type(tokenizer).__name__,
             _tokenizer_source(source), type(model).__name__, str(model.dtype).removeprefix("torch."),
             _weights_source(source))
    return model, tokenizer


# BERT-style encoders whose pooler (a dense layer on the first token) the retriever never uses.
POOLER_MODEL_TYPES = {"bert"}


def _check_tokenizer_files(path: Path, name: str, what: str) -> None:
    """A one-line UMRError unless `path` has a tokenizer that loads: a known file, a parseable sentencepiece model."""
    present = [f for f in TOKENIZER_FILES if (path / f).is_file()]
    if not present:
        raise UMRError(f"{name}: cannot load {what}: no tokenizer file (none of {', '.join(TOKENIZER_FILES)})")
    if present[0] in SENTENCEPIECE_FILES:
        model_file = path / present[0]
        try:
            import sentencepiece
        except ImportError:
            raise UMRError(f"{name}: cannot load {what}: its tokenizer is a sentencepiece {present[0]} "
                           "(no tokenizer.json), which needs the sentencepiece package") from None
        try:
            sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        except (RuntimeError, OSError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UMRError(f"{name}: cannot load {what}: {present[0]} is not a valid sentencepiece model "
                           f"({detail})") from None
        try:
            import google.protobuf  # noqa: F401 (transformers reads the model's protobuf to convert it)
        except ImportError:
            raise UMRError(f"{name}: cannot load {what}: its tokenizer is a sentencepiece {present[0]} "
                           "(no tokenizer.json), and converting it to a fast tokenizer needs the protobuf package "
                           "(pip install protobuf)") from None


def _snapshot_dir(name: str) -> Path | None:
    """The local directory a hub model was loaded from (its cache snapshot), if it can be found offline."""
    try:
        from transformers.utils import cached_file

        found = cached_file(name, "config.json", local_files_only=True)
    except (OSError, ValueError):
        return None
    return Path(found).parent if found else None


def _tokenizer_source(source: Path | None) -> str:
    if source is None:
        return "?"
    present = [f for f in TOKENIZER_FILES if (source / f).is_file()]
    if not present:
        return "?"
    return present[0] if present[0] == "tokenizer.json" else f"{present[0]} (no tokenizer.json)"


def _weights_source(source: Path | None) -> str:
    if source is None:
        return "?"
    return next((f for f in WEIGHTS_FILES if (source / f).is_file()), "?")


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextmanager
def _quiet_load_report() -> Iterator[None]:
    """Leave out transformers' table of missing/unexpected weights (`_report_weights` says it in one line)."""
    logger, drop = logging.getLogger("transformers.modeling_utils"), _DropLoadReport()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _report_weights(info: dict, name: str, what: str) -> None:
    """Warn about weights the checkpoint lacks (initialised at random) or has in excess (ignored); poolers excepted."""
    def keys(kind: str) -> list[str]:
        return sorted(str(k) for k in info.get(kind) or () if not str(k).startswith("pooler."))

    problems = [f"{label}: {', '.join(found[:10])}{' ...' if len(found) > 10 else ''}"
                for label, found in (("missing from the checkpoint, initialised at random", keys("missing_keys")),
                                     ("in the checkpoint but not in the model, ignored", keys("unexpected_keys")),
                                     ("of another shape in the checkpoint", keys("mismatched_keys")))
                if found]
    if problems:
        log.warning("%s: %s weights %s", name, what, "; ".join(problems))


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, source: Path | None, name: str, what: str) -> None:
    """Warnings for tokenizers that load but would not tokenize as the checkpoint was trained."""
    if source is None:
        return
    present = [f for f in TOKENIZER_FILES if (source / f).is_file()]
    if present and present[0] in SENTENCEPIECE_FILES:
        import sentencepiece

        reference = sentencepiece.SentencePieceProcessor(model_file=str(source / present[0])).encode(PROBE_TEXT)
        converted = tokenizer(PROBE_TEXT, add_special_tokens=False)["input_ids"]
        if converted != reference:
            log.warning("%s: %s's tokenizer %s (converted from %s) tokenizes differently from sentencepiece itself "
                        "(%d vs %d tokens on a multilingual probe text)", name, what, type(tokenizer).__name__,
                        present[0], len(converted), len(reference))
    if getattr(tokenizer, "do_lower_case", False) and any(
            piece != piece.lower() for piece in tokenizer.get_vocab() if not piece.startswith("[")):
        log.warning("%s: %s's tokenizer lowercases its input but its vocabulary is cased "
                    "(no \"do_lower_case\": false in tokenizer_config.json?)", name, what)


@dataclass
class DualEncoder:
    """Query and passage encoders plus the tokenizer they share."""

    query_model: PreTrainedModel
    passage_model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    max_length: int = 256

    @classmethod
    def load(cls, name_or_path: str, max_length: int = 256) -> "DualEncoder":
        path = Path(name_or_path)
        if (path / QUERY_DIR).is_dir() and (path / PASSAGE_DIR).is_dir():
            query_model, tokenizer = load_pretrained(str(path / QUERY_DIR))
            passage_model, _ = load_pretrained(str(path / PASSAGE_DIR))
        else:
            # Untied copies of one checkpoint, as UMR starts from mContriever.
            query_model, tokenizer = load_pretrained(name_or_path)
            passage_model, _ = load_pretrained(name_or_path)
        return cls(query_model, passage_model, tokenizer, max_length)

    def save(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        for sub, model in ((QUERY_DIR, self.query_model), (PASSAGE_DIR, self.passage_model)):
            model.save_pretrained(out_dir / sub)
            self.tokenizer.save_pretrained(out_dir / sub)

    def tokenize_questions(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]

    def tokenize_passages(self, passages: Sequence[Passage]) -> list[list[int]]:
        return self.tokenizer([p.title for p in passages], [p.text for p in passages],
                              truncation=True, max_length=self.max_length)["input_ids"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over non-padding positions (no normalisation)."""
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest (or `pad_to`) length."""
    width = pad_to or max(len(x) for x in ids)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def embed(model: PreTrainedModel, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean-pooled fp32 representations, whatever precision the forward pass ran in (autocast).

    The states are cast to fp32 before pooling: a bf16 sum over 256 tokens would round
    each partial sum to 8 mantissa bits. For fp32 states `.float()` returns them as they are.
    """
    hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    return mean_pool(hidden.float(), mask)


@torch.inference_mode()
def encode_ids(model: PreTrainedModel, ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 128,
               pad_to: int | None = None, sort_by_length: bool = True, desc: str = "encode",
               progress: bool = True, precision: str | Precision = "auto") -> np.ndarray:
    """Embed tokenized inputs; returns float32 [n, dim] in input order.

    `sort_by_length` groups similar lengths so dynamic padding wastes little;
    `pad_to` forces fixed-length padding (the naive reference of the benchmarks).
    `precision` (`umr.precision`) is the forward passes' compute precision; the
    embeddings are fp32 in any case (pooled in fp32, see `embed`).
    """
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable") if sort_by_length else np.arange(len(ids))
    device = next(model.parameters()).device
    precision = resolve_precision(precision, device)
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    for start in tqdm(range(0, len(ids), batch_size), desc=desc, unit="batch", disable=not progress, mininterval=5):
        rows = order[start : start + batch_size]
        input_ids, mask = pad_batch([ids[r] for r in rows], pad_id, pad_to)
        with precision.autocast():
            vectors = embed(model, input_ids.to(device), mask.to(device))
        out[rows] = vectors.float().cpu().numpy()
    return out


def shard_rows(n_rows: int, shard: int, num_shards: int) -> tuple[int, int]:
    """Row range [start, stop) of one of `num_shards` contiguous, near-equal shards."""
    if not 0 <= shard < num_shards:
        raise UMRError(f"shard {shard} out of range for {num_shards} shards")
    base, extra = divmod(n_rows, num_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


def device_for(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.encode", description="Encode one corpus shard with a retriever's passage encoder.")
    p.add_argument("--retriever", required=True, help="hub name, checkpoint dir, or distilled retriever dir")
    p.add_argument("--corpus", required=True, help="DPR TSV corpus")
    p.add_argument("--offsets", required=True, help="corpus offset table (.npz, from umr.corpus)")
    p.add_argument("--shard", type=int, default=0)
    p.add_argument("--num-shards", type=int, default=1)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--fp16", action="store_true", help="store embeddings as float16 (halves disk and index memory)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="compute precision of the forward passes (umr.precision; auto: bf16 on A100/H100, fp16 on "
                        "older GPUs, fp32 on CPU); pooling is fp32 either way (--fp16 sets the stored type)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="output .npy of embeddings, one row per passage of the shard")
    return p


def model_identity(model: PreTrainedModel) -> Any:
    """What identifies a model's weights, for fingerprints of resumable work.

    A model loaded from a local directory is identified by its files (names, sizes,
    mtimes: cheap at any size); any other by a hash of its parameters.
    """
    source = Path(getattr(model, "name_or_path", "") or "")
    if str(source) and source.is_dir():
        return {"dir": str(source.resolve()), "files": path_identity(source)}
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy().tobytes())
    return {"weights": digest.hexdigest()}


def encode_corpus_shard(encoder: "DualEncoder", corpus: Corpus, shard: int, num_shards: int, out: str | Path,
                        batch_size: int = 128, fp16: bool = False, chunk_size: int = 50_000,
                        precision: str | Precision = "auto") -> tuple[int, int]:
    """Encode one shard into a .npy file, streaming `chunk_size` passages at a time.

    Memory stays flat in the corpus size: passages are read, tokenized and encoded
    chunk by chunk. Each finished chunk is saved in `<out>.parts/` (`umr.io.PartsDir`),
    so a job killed half-way redoes only the unfinished chunks when rerun; the
    chunks are then merged into `out` (atomically) and the parts removed. Chunks
    computed by another model, corpus or setting are discarded, not reused.
    `fp16` is the stored embeddings' type; `precision` the forward passes' (`encode_ids`).
    """
    start, stop = shard_rows(len(corpus), shard, num_shards)
    dim = encoder.passage_model.config.hidden_size
    dtype = np.float16 if fp16 else np.float32
    device = next(encoder.passage_model.parameters()).device
    precision = resolve_precision(precision, device)
    log.info("encoding passages %d-%d of %d (shard %d/%d)", start, stop, len(corpus), shard + 1, num_shards)
    key = {
        "stage": "encode", "model": model_identity(encoder.passage_model), "max_length": encoder.max_length,
        "tokenizer": type(encoder.tokenizer).__name__, "vocab": len(encoder.tokenizer),
        "corpus": [str(corpus.path.resolve()), path_identity(corpus.path), len(corpus)],
        "rows": [start, stop], "chunk_size": chunk_size, "batch_size": batch_size, "dtype": np.dtype(dtype).name,
        "dim": dim, "device": device.type,
    }
    if precision.mixed:  # fp32 keeps the key it had before mixed precision, so its unfinished parts still count
        key["precision"] = precision.name
    parts = PartsDir(out, key)
    chunks = [(a, min(a + chunk_size, stop)) for a in range(start, stop, chunk_size)]
    names = [f"rows-{a:012d}-{b:012d}.npy" for a, b in chunks]
    done = set(parts.done())
    if done & set(names):
        log.info("resuming: %d of %d chunks already encoded in %s", len(done & set(names)), len(chunks), parts.path)
    for (chunk_start, chunk_stop), name in zip(chunks, names):
        if name in done and _valid_chunk(parts.file(name), (chunk_stop - chunk_start, dim), dtype):
            continue
        ids = encoder.tokenize_passages(list(corpus.iter_rows(chunk_start, chunk_stop)))
        vectors = encode_ids(encoder.passage_model, ids, encoder.tokenizer.pad_token_id, batch_size,
                             desc=f"shard {shard} rows {chunk_start}-{chunk_stop}", precision=precision)
        with parts.write(name) as tmp, open(tmp, "wb") as handle:
            np.save(handle, vectors.astype(dtype, copy=False))
    with atomic_file(out) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(stop - start, dim))
        for (chunk_start, chunk_stop), name in zip(chunks, names):
            array[chunk_start - start : chunk_stop - start] = np.load(parts.file(name), mmap_mode="r")
        array.flush()
        del array
    parts.remove()
    return start, stop


def _valid_chunk(path: Path, shape: tuple[int, int], dtype) -> bool:
    """A saved chunk of the expected shape and type (else it is recomputed)."""
    try:
        array = np.load(path, mmap_mode="r")
        ok = array.shape == shape and array.dtype == dtype
    except (OSError, ValueError):
        ok = False
    if not ok:
        log.warning("%s: unreadable or of the wrong shape; encoding it again", path)
    return ok


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    encoder = DualEncoder.load(args.retriever, args.max_length)
    device = device_for(args.device)
    precision = resolve_precision(args.precision, device)
    encoder.passage_model.to(device)
    if not precision.mixed:
        # Inference only: the same fp32 products, faster on CPU. Not under autocast, whose
        # bf16/fp16 activations these fp32-weight kernels would not take.
        use_onednn_linear(encoder.passage_model)
    with Corpus(args.corpus, args.offsets) as corpus:
        start, stop = encode_corpus_shard(encoder, corpus, args.shard, args.num_shards, args.out,
                                          args.batch_size, args.fp16, precision=precision)
    log.info("wrote %s (%d passages)", args.out, stop - start)


def encode_questions(encoder: DualEncoder, texts: Sequence[str], batch_size: int = 128,
                     precision: str | Precision = "auto") -> np.ndarray:
    """fp32 query embeddings of `texts`, computed in `precision` (`encode_ids`)."""
    return encode_ids(encoder.query_model, encoder.tokenize_questions(texts), encoder.tokenizer.pad_token_id,
                      batch_size, desc="questions", progress=False, precision=precision)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
