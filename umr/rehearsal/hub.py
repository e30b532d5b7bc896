"""Tiny stand-ins for the paper's hub models, in the real checkpoints' formats, in a hub-layout cache.

On a cluster the pipeline reads `facebook/mcontriever` (a BERT `vocab.txt` tokenizer, no
`tokenizer.json`; `pytorch_model.bin` without pooler weights), `chaoweihuang/mt5-xl-lm-adapt`
and `bigscience/mt0-xl` (mT5: a sentencepiece `spiece.model`, no `tokenizer.json`;
`pytorch_model.bin`). The toy models the tests use are saved by `save_pretrained` (fast
`tokenizer.json`, safetensors), so these formats take other code paths: slow-to-fast
tokenizer conversion (protobuf), `torch.load` of pickled weights, a BERT without pooler.
`build_hub_cache` writes random-weight models of a few hundred thousand parameters in
those formats into a Hugging Face cache directory laid out as `hf download`
leaves one (`models--org--name/{refs/main, snapshots/<commit>/<file> -> ../../blobs/<sha256>}`),
for `python -m umr.download model --hub-cache DIR` to read, as an offline cluster would.

Deterministic: the same texts and seed give the same bytes and the same fake commits.
The tokenizers are learned from the given texts (the toy collections), so every script of
the seven XOR languages and English has its own pieces.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Callable, Sequence

import torch

from umr.io import log

SENTINELS = 100  # mT5's <extra_id_0> ... <extra_id_99>: the last pieces of its spiece.model


def _bert_vocab(texts: Sequence[str], vocab_size: int) -> list[str]:
    """mBERT's vocab.txt layout ([PAD], [unused1-99], [UNK] [CLS] [SEP] [MASK] at 100-103), the pieces from `texts`."""
    from tokenizers import normalizers, pre_tokenizers

    from umr.models import learn_wordpiece_vocab, script_alphabet

    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False,
                                            lowercase=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    head = ["[PAD]", *(f"[unused{i}]" for i in range(1, 100)), "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # vocab.txt is one piece per line: a piece holding a newline (the alphabet has one) would be two
    alphabet = [c for c in script_alphabet() if c.isprintable() and not c.isspace()]
    pieces = learn_wordpiece_vocab(words, alphabet, vocab_size - len(head))
    return list(dict.fromkeys([*head, *pieces]))


def _spiece_model(texts: Sequence[str], vocab_size: int, seed: int) -> bytes:
    """A unigram sentencepiece model as mT5's: pad 0, eos 1, unk 2, no bos, NFKC, no byte fallback, sentinels last."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    from umr.models import script_alphabet

    spm.set_random_generator_seed(seed)
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, model_type="unigram", vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, required_chars="".join(script_alphabet()),
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, byte_fallback=False, normalization_rule_name="nmt_nfkc",
        max_sentence_length=1 << 16, num_threads=1, minloglevel=2)
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buffer.getvalue())
    # mT5's spiece.model ends with its 100 sentinels, <extra_id_0> last (T5's order); the
    # tokenizer_config then says extra_ids 0 (nothing to add).
    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for i in reversed(range(SENTINELS)):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = f"<extra_id_{i}>", 0.0, user_defined
    return proto.SerializeToString()


def _torch_bytes(state_dict: dict[str, torch.Tensor]) -> bytes:
    """`torch.save` of a state dict (the pickled `pytorch_model.bin` of older hub checkpoints)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().clone().contiguous() for k, v in state_dict.items()}, buffer)
    return buffer.getvalue()


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def mcontriever_files(texts: Sequence[str], seed: int) -> dict[str, bytes]:
    """`facebook/mcontriever`'s files: BertModel config, vocab.txt tokenizer, pooler-less `pytorch_model.bin`."""
    from transformers import BertConfig, BertModel

    vocab = _bert_vocab(texts, vocab_size=3000)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=512, architectures=["BertModel"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)  # mContriever's checkpoint has no pooler
    specials = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                "mask_token": "[MASK]"}
    return {
        "config.json": _json(config.to_dict()),
        "pytorch_model.bin": _torch_bytes(model.state_dict()),
        "vocab.txt": ("\n".join(vocab) + "\n").encode("utf-8"),
        # as mBERT-cased's (which mContriever was initialised from): cased, CJK characters split
        "tokenizer_config.json": _json({"do_lower_case": False, "tokenize_chinese_chars": True, "strip_accents": None,
                                        "model_max_length": 512, "tokenizer_class": "BertTokenizer", **specials}),
        "special_tokens_map.json": _json(specials),
    }


def mt5_files(texts: Sequence[str], seed: int, spiece: bytes) -> dict[str, bytes]:
    """An mT5 checkpoint's files: MT5ForConditionalGeneration config, `spiece.model`, `pytorch_model.bin`."""
    from transformers import MT5Config, MT5ForConditionalGeneration

    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_proto=spiece).get_piece_size()
    d_model = 64
    # mT5's embedding matrix is padded past the tokenizer's vocabulary (250112 rows for 250100 pieces).
    config = MT5Config(vocab_size=-(-pieces // 128) * 128, d_model=d_model, d_kv=32, d_ff=128, num_layers=2,
                       num_decoder_layers=2, num_heads=2, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                       decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, tokenizer_class="T5Tokenizer",
                       architectures=["MT5ForConditionalGeneration"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MT5ForConditionalGeneration(config)
        # HF's init draws the untied head with std 1 (logits of std ~sqrt(d_model)); a trained mT5's are tamer.
        torch.nn.init.normal_(model.lm_head.weight, std=d_model**-0.5)
    specials = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    return {
        "config.json": _json(config.to_dict()),
        "pytorch_model.bin": _torch_bytes(model.state_dict()),
        "spiece.model": spiece,
        # as google/mt5-xl's: the sentinels are already pieces of spiece.model
        "tokenizer_config.json": _json({**specials, "extra_ids": 0, "additional_special_tokens": None}),
        "special_tokens_map.json": _json(specials),
    }


def fake_commit(repo_id: str, files: dict[str, bytes]) -> str:
    """A 40-hex "commit" that is a function of the repository's content."""
    digest = hashlib.sha1(repo_id.encode("utf-8"))
    for name in sorted(files):
        digest.update(f"\0{name}\0{hashlib.sha256(files[name]).hexdigest()}".encode("utf-8"))
    return digest.hexdigest()


def write_repo(cache_dir: Path, repo_id: str, files: dict[str, bytes], revision: str = "main") -> str:
    """Write one repository into a hub-layout cache; returns its commit. Idempotent: equal content is left as it is."""
    repo = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    commit = fake_commit(repo_id, files)
    snapshot = repo / "snapshots" / commit
    for name, data in sorted(files.items()):
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            blob.parent.mkdir(parents=True, exist_ok=True)
            tmp = blob.with_name(f".{blob.name}.tmp-{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, blob)
        link = snapshot / name
        target = os.path.relpath(blob, link.parent)
        if not (link.is_symlink() and os.readlink(link) == target):
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(target)
    ref = repo / "refs" / revision
    if not ref.exists() or ref.read_text() != commit:
        ref.parent.mkdir(parents=True, exist_ok=True)
        tmp = ref.with_name(f".{ref.name}.tmp-{os.getpid()}")
        tmp.write_text(commit)  # no newline, as huggingface_hub writes it
        os.replace(tmp, ref)
    return commit


# repo id -> seed offset of its random weights; the two mT5s share one sentencepiece model, as the real ones do.
STAND_INS: dict[str, int] = {"facebook/mcontriever": 0, "chaoweihuang/mt5-xl-lm-adapt": 1, "bigscience/mt0-xl": 2}


def build_hub_cache(texts: Sequence[tuple[str, str]], cache_dir: Path, seed: int = 0) -> dict[str, str]:
    """Write the three stand-ins (`STAND_INS`) into `cache_dir` in hub layout; returns repo id -> commit.

    `texts`: (title, text) pairs, e.g. `umr.models.collection_texts` of the toy collections.
    """
    cache_dir = Path(cache_dir)
    lines = [f"{title} {text}".strip() for title, text in texts]
    if not lines:
        raise ValueError("build_hub_cache needs some texts to learn the tokenizers from")
    spiece = _spiece_model(lines, vocab_size=2000, seed=seed)
    builders: dict[str, Callable[[int], dict[str, bytes]]] = {
        "facebook/mcontriever": lambda s: mcontriever_files(lines, s),
        "chaoweihuang/mt5-xl-lm-adapt": lambda s: mt5_files(lines, s, spiece),
        "bigscience/mt0-xl": lambda s: mt5_files(lines, s, spiece),
    }
    commits = {}
    for repo_id, offset in STAND_INS.items():
        commits[repo_id] = write_repo(cache_dir, repo_id, builders[repo_id](seed + offset))
        log.info("hub cache %s: %s at commit %s", cache_dir, repo_id, commits[repo_id])
    return commits
