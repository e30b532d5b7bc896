"""Stage: build the tiny offline models that stand in for mContriever and mT5-XL.

No model can be downloaded on the development and CI machines, so the default
(toy) configuration builds its own from the toy collections' text, without any
question or label:

- `retriever`: a WordPiece tokenizer and a small BERT encoder pre-trained the
  Contriever way (two random crops of a passage are positives, other passages in
  the batch negatives, InfoNCE), standing in for `facebook/mcontriever`;
- `reranker`: a subword tokenizer and a small mT5-architecture encoder-decoder
  pre-trained on unsupervised text objectives (span corruption as mT5, prefix LM
  as its LM adaptation, gap-sentence generation as PEGASUS), standing in for
  `chaoweihuang/mt5-xl-lm-adapt`.

Both are saved with `save_pretrained` and loaded later by the same code that loads
hub names (`AutoModel`, `AutoModelForSeq2SeqLM`, `AutoTokenizer`).
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tqdm import tqdm
from transformers import (BertConfig, BertModel, MT5Config, MT5ForConditionalGeneration, PreTrainedTokenizerFast,
                          get_linear_schedule_with_warmup)

from umr.encode import mean_pool, pad_batch
from umr.fasttrain import optimise_for_training, retain_freed_memory
from umr.io import atomic_dir, log, run_cli, seed_everything, set_threads
from umr.records import iter_dpr_tsv


def script_alphabet() -> list[str]:
    """Characters of the toy languages' scripts and ASCII punctuation.

    A real multilingual vocabulary covers every character of its languages; a
    tokenizer trained on passages alone would map question-only characters (a
    question mark, an interrogative kanji) to the unknown token.
    """
    import umr.toy_lexicon as lexicon

    chars = {chr(c) for c in range(0x21, 0x7F)}
    for value in vars(lexicon).values():
        for text in _strings(value):
            chars.update(text)
    chars.discard(" ")
    return sorted(chars)


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _strings(v)


def collection_texts(corpora: Sequence[str | Path]) -> list[tuple[str, str]]:
    """(title, text) of every passage of the given DPR TSV collections, in file order.

    A passage in two collections (XOR-Full's includes the English one) counts once.
    """
    return list(dict.fromkeys((p.title, p.text) for path in corpora for p in iter_dpr_tsv(path)))


# -- tokenizers ---------------------------------------------------------------------------
def learn_wordpiece_vocab(words: Counter[str], alphabet: Sequence[str], vocab_size: int,
                          min_frequency: int = 2) -> list[str]:
    """Subword pieces by greedy pair merging (BPE with "##" continuation pieces), in merge order.

    Written out rather than taken from `tokenizers`' WordPieceTrainer because that trainer breaks
    ties between equally frequent pairs in hash-map order, which changes from process to process:
    two runs with the same seed got different vocabularies. Here ties go to the
    lexicographically smallest pair, so the vocabulary is a function of the corpus alone.
    """
    types = sorted(words)
    freq = [words[w] for w in types]
    symbols = [[w[0], *(f"##{c}" for c in w[1:])] for w in types]
    # An insertion-ordered dict: the vocabulary in order, with set-speed membership.
    pieces = dict.fromkeys([*alphabet, *(f"##{c}" for c in alphabet), *(p for word in symbols for p in word)])
    pair_count: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, word in enumerate(symbols):
        for pair in zip(word, word[1:]):
            pair_count[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pair_count.items()]
    heapq.heapify(heap)
    while len(pieces) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negative:
            continue  # stale entry: the pair's count changed since it was pushed
        if -negative < min_frequency:
            break
        left, right = pair
        merged = left + right[2:]
        pieces.setdefault(merged)
        changed: set[tuple[str, str]] = set()
        for i in sorted(where.pop(pair, ())):
            word = symbols[i]
            for old in zip(word, word[1:]):
                pair_count[old] -= freq[i]
                changed.add(old)
            out, j = [], 0
            while j < len(word):
                if j + 1 < len(word) and word[j] == left and word[j + 1] == right:
                    out.append(merged)
                    j += 2
                else:
                    out.append(word[j])
                    j += 1
            symbols[i] = out
            for new in zip(out, out[1:]):
                pair_count[new] += freq[i]
                where[new].add(i)
                changed.add(new)
        for p in changed:
            if pair_count[p] > 0:
                heapq.heappush(heap, (-pair_count[p], p))
            else:
                pair_count.pop(p, None)
    return list(pieces)


def train_wordpiece(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A cased multilingual WordPiece tokenizer (mBERT-like) trained on `texts`, deterministically."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: Counter[str] = Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    # Every character also as a word-continuation piece, so no in-script word is unknown.
    pieces = learn_wordpiece_vocab(words, script_alphabet(), vocab_size - len(specials))
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys([*specials, *pieces]))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    # The generic fast class keeps tokenizer.json authoritative when reloaded with AutoTokenizer.
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                                   cls_token="[CLS]", mask_token="[MASK]", model_max_length=512)


SENTINELS = 32  # span-corruption sentinels <extra_id_0> ... (mT5 has 100)


def train_lm_tokenizer(texts: Sequence[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A subword tokenizer with mT5's special tokens (pad 0, eos 1, unk 2) and sentinels.

    BPE rather than a Unigram model: on a corpus this small, Unigram training gives
    degenerate pieces ("▁", "w", "as" for "was"). Punctuation is split off so that a
    name before a full stop and before a question mark is the same piece.
    """
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation("isolated")])
    tok.decoder = decoders.Metaspace()
    sentinels = [f"<extra_id_{i}>" for i in range(SENTINELS)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"] + sentinels,
                                                       initial_alphabet=script_alphabet(), show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", tok.token_to_id("</s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=sentinels, model_max_length=512)


def _schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return get_linear_schedule_with_warmup(optimizer, max(1, steps // 10), steps)


# -- Contriever-style retriever ---------------------------------------------------------------
def random_crop(ids: Sequence[int], rng: random.Random, min_ratio: float, max_ratio: float) -> list[int]:
    """A contiguous span covering `min_ratio`-`max_ratio` of the sequence (Contriever's cropping)."""
    n = len(ids)
    length = max(1, int(n * rng.uniform(min_ratio, max_ratio)))
    start = rng.randint(0, n - length)
    return list(ids[start : start + length])


def fold_temperature(model: BertModel, temperature: float) -> None:
    """Scale the last LayerNorm so raw dot products equal the pre-training logits (q·d / τ).

    Distillation uses raw dot products as the student's logits (SPEC §1, no temperature).
    Trained at τ = 0.05, the tiny encoder's raw scores differ by hundredths, so its softmax
    over passages is nearly uniform and the KL loss first has to blow up the embedding
    scale, wrecking what pre-training learned. Scaling by 1/sqrt(τ) on each side keeps
    every ranking and gives the student the distribution it was trained to produce
    (measured on the default toy before its tokenizer was made deterministic: one UMR
    iteration from R@2kt 34.6 gave 10.9 unscaled, 31.1 scaled).
    """
    scale = temperature**-0.5
    norm = model.encoder.layer[-1].output.LayerNorm
    with torch.no_grad():
        norm.weight.mul_(scale)
        norm.bias.mul_(scale)


def embed_by_length(model: BertModel, views: Sequence[Sequence[int]], pad_id: int, bucket_size: int) -> torch.Tensor:
    """Mean-pooled embeddings of `views`, in their order, computed in buckets of similar length.

    Random crops range from 10% to 50% of a passage, so one batch padded to its longest
    crop is mostly padding; a bucket of neighbours in length is padded only to its own
    longest. The loss still sees every view of the batch (one graph, one backward).
    """
    order = sorted(range(len(views)), key=lambda i: (len(views[i]), i))
    parts = []
    for start in range(0, len(order), bucket_size):
        input_ids, mask = pad_batch([views[i] for i in order[start : start + bucket_size]], pad_id)
        parts.append(mean_pool(model(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask))
    return torch.cat(parts)[torch.argsort(torch.tensor(order))]  # back to input order


def pretrain_retriever(texts: Sequence[tuple[str, str]], out_dir: str | Path, *, vocab_size: int, hidden: int, layers: int,
                       heads: int, intermediate: int, steps: int, batch_size: int, lr: float, temperature: float,
                       seed: int, max_length: int = 256, dropout: float = 0.1, bucket_size: int = 32) -> None:
    """Build the tiny mContriever stand-in: tokenizer + BERT pre-trained on random-crop pairs."""
    seed_everything(seed)
    rng = random.Random(seed)
    texts = [f"{title} {text}" for title, text in texts]
    tokenizer = train_wordpiece(texts, vocab_size)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=max_length,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = optimise_for_training(BertModel(config))  # the pooler is unused, but hub BERT checkpoints carry one
    docs = [ids for ids in tokenizer(list(texts), add_special_tokens=False, truncation=True,
                                     max_length=max_length - 2)["input_ids"] if len(ids) >= 8]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = _schedule(optimizer, steps)
    cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
    model.train()
    progress = tqdm(range(steps), desc="pretrain retriever", mininterval=10)
    for step in progress:
        batch = rng.sample(docs, batch_size)
        views = [[cls_id, *random_crop(d, rng, 0.1, 0.5), sep_id] for d in batch for _ in range(2)]
        emb = embed_by_length(model, views, pad_id, bucket_size)
        first, second = emb[0::2], emb[1::2]
        logits = first @ second.T / temperature
        labels = torch.arange(batch_size)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
            log.info("retriever step %d/%d loss %.4f", step, steps, loss.item())
    fold_temperature(model, temperature)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


# -- seq2seq reranker LM -------------------------------------------------------------------------
def span_corruption(ids: Sequence[int], rng: random.Random, sentinel_ids: Sequence[int], eos: int,
                    noise_density: float = 0.15, mean_span: float = 3.0) -> tuple[list[int], list[int]]:
    """T5's span corruption: spans replaced by sentinels in the input, restored in the target."""
    n = len(ids)
    n_noise = max(1, min(n - 1, round(n * noise_density)))
    n_spans = max(1, min(len(sentinel_ids), round(n_noise / mean_span)))
    noise_lengths = _partition(n_noise, n_spans, rng)
    keep_lengths = _partition(n - n_noise, n_spans, rng)
    source, target, pos = [], [], 0
    for i, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        source += list(ids[pos : pos + keep]) + [sentinel_ids[i]]
        target += [sentinel_ids[i]] + list(ids[pos + keep : pos + keep + noise])
        pos += keep + noise
    return source + list(ids[pos:]) + [eos], target + [eos]


def _partition(total: int, parts: int, rng: random.Random) -> list[int]:
    """`total` split into `parts` random positive lengths (zero-length parts only if total < parts)."""
    if total < parts:
        return [1] * total + [0] * (parts - total)
    cuts = sorted(rng.sample(range(1, total), parts - 1))
    return [b - a for a, b in zip([0] + cuts, cuts + [total])]


def gap_sentence(sentences: Sequence[Sequence[int]], rng: random.Random, mask_id: int, eos: int,
                 max_input: int) -> tuple[list[int], list[int]]:
    """PEGASUS's gap-sentence generation: one sentence is removed (a mask token marks
    the gap) and the decoder writes it from the rest of the passage."""
    gap = rng.randrange(len(sentences))
    source = [t for i, sent in enumerate(sentences) for t in ([mask_id] if i == gap else sent)]
    return source[:max_input] + [eos], list(sentences[gap]) + [eos]


def title_generation(title: Sequence[int], sentences: Sequence[Sequence[int]], eos: int,
                     max_input: int) -> tuple[list[int], list[int]]:
    """The passage's title from its text (titles of person articles are names the text repeats)."""
    return [t for sent in sentences for t in sent][:max_input] + [eos], list(title) + [eos]


def prefix_lm(ids: Sequence[int], rng: random.Random, eos: int, max_input: int, max_target: int) -> tuple[list[int], list[int]]:
    """LM adaptation: the encoder reads a prefix, the decoder continues the text."""
    cut = rng.randint(max(1, len(ids) // 4), max(2, (3 * len(ids)) // 4))
    return list(ids[max(0, cut - max_input) : cut]) + [eos], list(ids[cut : cut + max_target]) + [eos]


# Share of examples per unsupervised objective. Measured on the default toy (1500 steps,
# reranking the tiny retriever's dev top-60, on the toy build before its tokenizer was made
# deterministic): with this mix the LM learns to copy names across languages and reranking
# beats the retriever (R@2kt 34.6 -> 40.9; 2026-12-02 build: 32.0 -> 38.6); mixes built on
# span corruption, prefix LM, gap sentences or random cross-lingual sentences never learned
# to copy and ranked *below* the retriever (19-29), as did 300-800 steps of this mix.
OBJECTIVES = {"anchored sentence": 0.6, "title": 0.2, "span corruption": 0.2}
_GLOSS = re.compile(r"\(([A-Z][a-z]+(?: [A-Z][a-z]+)+)\)")


def interlanguage_links(texts: Sequence[tuple[str, str]]) -> list[tuple[int, list[int]]]:
    """(in-language passage, English passages of the same title) pairs, found from text alone.

    The toy analogue of Wikipedia's interlanguage links: an article about a foreign
    person gives the original spelling in parentheses on first mention, and that
    spelling is the title of the English article.
    """
    by_title: dict[str, list[int]] = {}
    for i, (title, _) in enumerate(texts):
        by_title.setdefault(title, []).append(i)
    links = []
    for i, (title, text) in enumerate(texts):
        match = _GLOSS.search(text)
        if match and match.group(1) != title and match.group(1) in by_title:
            links.append((i, by_title[match.group(1)]))
    return links


def split_sentences(text: str) -> list[str]:
    """Sentences of a toy passage (they end in '.' or '。'/'।' and a space)."""
    import re

    return [s for s in re.split(r"(?<=[.。।])\s+", text) if s]


def pretrain_lm(texts: Sequence[tuple[str, str]], out_dir: str | Path, *, vocab_size: int, d_model: int, layers: int, heads: int,
                d_ff: int, steps: int, batch_size: int, lr: float, seed: int, max_input: int = 128,
                max_target: int = 48, objectives: dict[str, float] | None = None,
                label_smoothing: float = 0.1, dropout: float = 0.1, snapshot_steps: Sequence[int] = ()) -> None:
    """Build the tiny mT5-XL-LM-adapt stand-in from unlabelled passages.

    `snapshot_steps` also saves the model after those steps, in `<out_dir>.step-<N>`
    (learning-curve studies: how many steps the reranker needs).

    Each example draws one unsupervised objective (`OBJECTIVES`): span corruption
    (mT5's pre-training), prefix LM (its "LM adaptation"), title generation and
    gap-sentence generation (PEGASUS) within an article, and cross-lingual sentence
    generation between articles on the same title in two languages (the toy's
    interlanguage links), optionally "anchored" on sentences that name the linked
    title. The cross-lingual ones stand in for what mT5-XL brings from its scale and
    mC4: writing text in one language whose names and numbers come from a
    passage in another. No question, answer or question-passage pair is involved.
    """
    seed_everything(seed)
    rng = random.Random(seed)
    tokenizer = train_lm_tokenizer([f"{title} {text}" for title, text in texts], vocab_size)
    config = MT5Config(vocab_size=len(tokenizer), d_model=d_model, d_kv=d_model // heads, d_ff=d_ff,
                       num_layers=layers, num_decoder_layers=layers, num_heads=heads, feed_forward_proj="gated-gelu",
                       dropout_rate=dropout,
                       tie_word_embeddings=False, decoder_start_token_id=tokenizer.pad_token_id,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    model = MT5ForConditionalGeneration(config)
    # HF's T5 init draws the untied LM head with std 1, which at this width gives
    # logits of std ~sqrt(d_model) and a first loss near 75; scale it like T5's tied head.
    torch.nn.init.normal_(model.lm_head.weight, std=d_model**-0.5)
    optimise_for_training(model)
    docs = []
    for title, text in texts:
        pieces = tokenizer([title] + split_sentences(text), add_special_tokens=False)["input_ids"]
        docs.append((pieces[0], [ids for ids in pieces[1:] if ids]))
    links = interlanguage_links(texts)
    log.info("%d in-language passages linked to English articles", len(links))
    anchored = {local: [tokenizer(sent, add_special_tokens=False)["input_ids"]
                        for sent in split_sentences(texts[local][1]) if texts[english[0]][0] in sent]
                for local, english in links}
    usable = [i for i, (title, sentences) in enumerate(docs) if title and sum(map(len, sentences)) >= 8]
    sentinel_ids = tokenizer.convert_tokens_to_ids([f"<extra_id_{i}>" for i in range(SENTINELS)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    scheduler = _schedule(optimizer, steps)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    names, weights = zip(*(objectives or OBJECTIVES).items())
    model.train()
    progress = tqdm(range(steps), desc="pretrain LM", mininterval=10)
    for step in progress:
        pairs = []
        for index in rng.sample(usable, batch_size):
            title, sentences = docs[index]
            flat = [t for sent in sentences for t in sent]
            objective = rng.choices(names, weights)[0]
            if objective in ("cross-lingual sentence", "anchored sentence") and links:
                # A sentence of an in-language article, written from its English counterpart;
                # "anchored" picks a sentence that names the English title (mined, like
                # anchor-text pairs, from text alone), where a name must be copied across.
                local, english = rng.choice(links)
                en_title, en_sentences = docs[rng.choice(english)]
                source = (list(en_title) + [t for sent in en_sentences for t in sent])[:max_input] + [eos]
                candidates = anchored[local] if objective == "anchored sentence" and anchored[local] else docs[local][1]
                pairs.append((source, list(rng.choice(candidates)) + [eos]))
            elif objective == "title":
                pairs.append(title_generation(title, sentences, eos, max_input))
            elif objective == "span corruption" or len(sentences) < 2:
                pairs.append(span_corruption(flat[:max_input], rng, sentinel_ids, eos))
            elif objective == "gap sentence":
                pairs.append(gap_sentence(sentences, rng, sentinel_ids[0], eos, max_input))
            else:
                pairs.append(prefix_lm(flat[: max_input + max_target], rng, eos, max_input, max_target))
        input_ids, mask = pad_batch([src for src, _ in pairs], pad)
        labels, _ = pad_batch([tgt[:max_target] for _, tgt in pairs], -100)
        logits = model(input_ids=input_ids, attention_mask=mask, labels=labels).logits
        # Label smoothing keeps the log-probabilities of unlikely tokens flat across
        # passages, so a passage does not win every question by its prior alone.
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100,
                               label_smoothing=label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step + 1 in snapshot_steps:
            with atomic_dir(f"{out_dir}.step-{step + 1}") as tmp:
                model.save_pretrained(tmp)
                tokenizer.save_pretrained(tmp)
        if step % 50 == 0:
            progress.set_postfix(loss=f"{loss.item():.3f}")
            log.info("LM step %d/%d loss %.4f (ppl %.1f)", step, steps, loss.item(), math.exp(min(20.0, loss.item())))
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.models", description="Build a tiny offline model from toy collections.")
    p.add_argument("kind", choices=["retriever", "reranker"])
    p.add_argument("--corpus", nargs="+", required=True, help="DPR TSV collections whose text trains the model")
    p.add_argument("--out", required=True, help="output directory (save_pretrained)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--hidden", type=int, default=128, help="hidden size (d_model for the LM)")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--intermediate", type=int, default=512, help="feed-forward size")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--temperature", type=float, default=0.05, help="InfoNCE temperature (retriever)")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout rate during pre-training")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    return p


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    retain_freed_memory()
    texts = collection_texts(args.corpus)
    log.info("training a tiny %s on %d passages", args.kind, len(texts))
    common = dict(vocab_size=args.vocab_size, layers=args.layers, heads=args.heads, steps=args.steps,
                  batch_size=args.batch_size, lr=args.lr, dropout=args.dropout, seed=args.seed)
    if args.kind == "retriever":
        pretrain_retriever(texts, args.out, hidden=args.hidden, intermediate=args.intermediate,
                           temperature=args.temperature, **common)
    else:
        pretrain_lm(texts, args.out, d_model=args.hidden, d_ff=args.intermediate, **common)
    log.info("saved %s", args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
