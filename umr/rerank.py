"""Stage 1 of UMR: unsupervised multilingual reranking with a frozen seq2seq LM.

Every (question, passage) pair of a retriever's top-k is scored by the mean
log-likelihood of the question given the passage and an instruction, teacher
forced (no generation): the encoder reads instruction + passage, the decoder the
question. Higher = more relevant. The paper writes the *negative* log-likelihood
and then softmax(r/τ), which taken literally would favour the least likely
question; the official code (and this module) scores with the log-likelihood.

Templates (`TEMPLATES`): `official` is the official code's, `paper` uses the
paper's instruction wording in the same frame. `aggregation` is `mean` (UMR) or
`sum` (UPR) over all label tokens, the `Question:` prefix and `</s>` included.

Pairs are scored in length-sorted batches across questions under a token budget;
scores equal a one-pair-at-a-time loop (tests). Within a batch, pairs with the same
encoder input (same passage, same question language: every pair of a rerank job
whose passage another question also retrieved) share one encoder pass; encoder
inputs are batched by exact length (no padding, no attention mask), the batch's
pairs form one decoder call whose cross-attention reads the distinct inputs packed
without padding, and the LM head's log-softmax is taken only at real label
positions, a few rows at a time. The model itself is rewritten for inference by
`umr.fastlm.optimise_for_inference` (the same function with fewer, faster kernels).
A score is a pure function of (question, passage, reranker settings), so scores
already computed by an earlier iteration or variant with the same settings are
reused (`--cache`).

A job reranks one language (and chunk of its questions), or several in one process
(`--lang ja ru --out ja.trec ru.trec`, `umr.rerank.group_languages`): one after the
other, each exactly as its own job would, with one model load for all.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForSeq2SeqLM

from umr.corpus import Corpus
from umr.encode import device_for, load_pretrained, model_identity, shard_rows
from umr.errors import UMRError
from umr.fastlm import SharedSources, optimise_for_inference
from umr.io import PartsDir, atomic_file, fingerprint_items, log, parts_path, path_identity, run_cli, set_threads
from umr.languages import language_name
from umr.precision import resolve_precision
from umr.records import Passage, Question, Run, read_questions, read_trec_run, write_trec_run


@dataclass(frozen=True)
class Template:
    encoder: str
    label: str


TEMPLATES: dict[str, Template] = {
    # upr-multi.py: "{verbalizer_head} {title} {text}. {verbalizer} in {lang}." with head "Passage: "
    # (hence two spaces) and verbalizer "Please write a question based on this passage".
    "official": Template("Passage:  {title} {text}. Please write a question based on this passage in {language}.",
                         "Question: {question}"),
    # The paper's instruction ("Based on the passage, please write a question in L") in the same frame.
    "paper": Template("Passage:  {title} {text}. Based on the passage, please write a question in {language}.",
                      "Question: {question}"),
}
AGGREGATIONS = ("mean", "sum")
# Label positions whose vocabulary logits are materialised at once: a [rows, vocab]
# block stays in cache, where a whole batch's [pairs, length, vocab] would not.
LOGIT_ROWS = 256
# Tokens per encoder call on CPU (`Reranker.encoder_tokens`): activations that stay in cache.
CPU_ENCODER_TOKENS = 4096


class Reranker:
    """A frozen seq2seq LM that scores log p(question | instruction, passage)."""

    def __init__(self, model: str, template: str = "official", aggregation: str = "mean", device: str = "auto",
                 dtype: str = "auto", max_input_length: int = 512, max_label_length: int = 128,
                 batch_tokens: int = 16384):
        if template not in TEMPLATES:
            raise UMRError(f"unknown reranker template {template!r}; choose from {', '.join(TEMPLATES)}")
        if aggregation not in AGGREGATIONS:
            raise UMRError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
        self.template = TEMPLATES[template]
        self.aggregation = aggregation
        self.device = device_for(device)
        # mT5 overflows in fp16 (feed-forward activations beyond 65504), so there is no fp16 setting: auto is
        # bf16 on GPUs with native bf16 (compute capability >= 8.0: A100, H100), fp32 on older GPUs (V100)
        # and on CPU (umr.precision, fp16_safe=False); an explicit bf16 runs on CPU too, slower. Not fp16
        # with an fp32 retry of overflowing batches: the weights are loaded in this type (no autocast), so a
        # retry would need a second, fp32 copy of a 3.7B-parameter model.
        if dtype not in ("auto", "bf16", "fp32"):
            raise UMRError(f"unknown reranker dtype {dtype!r}; choose from auto, bf16, fp32 (fp16 overflows in mT5)")
        torch_dtype = resolve_precision(dtype, self.device, fp16_safe=False, what="reranker dtype",
                                        how="weights").dtype
        self.model, self.tokenizer = load_pretrained(model, "reranker", AutoModelForSeq2SeqLM, dtype=torch_dtype)
        self.model.to(self.device).eval()
        # Exact rewrites; oneDNN products and fused norms only for fp32 weights (bf16 keeps torch's kernels).
        optimise_for_inference(self.model)
        log.info("reranker computes in %s on %s (dtype setting %s)", str(self.model.dtype).removeprefix("torch."),
                 self.device, dtype)
        self.max_input_length = max_input_length
        self.max_label_length = max_label_length
        self.batch_tokens = batch_tokens
        self.encoder_tokens = CPU_ENCODER_TOKENS if self.device.type == "cpu" else batch_tokens

    def encoder_text(self, passage: Passage, lang: str) -> str:
        return self.template.encoder.format(title=passage.title, text=passage.text, language=language_name(lang))

    def label_text(self, question: Question) -> str:
        return self.template.label.format(question=question.text)

    def tokenize(self, pairs: Sequence[tuple[Question, Passage]]) -> tuple[list[list[int]], list[list[int]]]:
        # Each distinct encoder text (a passage retrieved by several questions of a language) is tokenized once.
        texts = [self.encoder_text(p, q.lang) for q, p in pairs]
        distinct = list(dict.fromkeys(texts))
        ids_of = dict(zip(distinct, self.tokenizer(distinct, truncation=True,
                                                   max_length=self.max_input_length)["input_ids"]))
        sources = [ids_of[text] for text in texts]
        labels_by_text: dict[str, list[int]] = {}
        labels = []
        for q, _ in pairs:
            text = self.label_text(q)
            if text not in labels_by_text:
                labels_by_text[text] = self.tokenizer(text, truncation=True, max_length=self.max_label_length)["input_ids"]
            labels.append(labels_by_text[text])
        return sources, labels

    @torch.inference_mode()
    def score_batch(self, sources: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> np.ndarray:
        """Scores of equally many (encoder ids, label ids) pairs.

        Identical encoder inputs are encoded once; encoder inputs of one length form
        one encoder call (no padding, so no attention mask). All pairs then form one
        decoder call: labels right-padded (the causal decoder never looks at the
        padded positions after the real ones, which are left out of the score), the
        encoder states of the distinct inputs packed without padding
        (`umr.fastlm.SharedSources`: cross-attention reads each input once).
        """
        model, pad = self.model, self.tokenizer.pad_token_id
        unique: dict[tuple[int, ...], int] = {}
        source_of = [unique.setdefault(tuple(s), len(unique)) for s in sources]
        users: list[list[int]] = [[] for _ in unique]
        for row, u in enumerate(source_of):
            users[u].append(row)
        keys = list(unique)
        # Inputs by (length, number of pairs): one encoder call per length, few cross-attention calls.
        inputs = sorted(range(len(keys)), key=lambda u: (len(keys[u]), len(users[u]), u))
        encoder, hidden = model.get_encoder(), []
        start = 0
        while start < len(inputs):
            length = len(keys[inputs[start]])
            stop = start
            while stop < len(inputs) and len(keys[inputs[stop]]) == length and (
                    stop == start or (stop - start + 1) * length <= self.encoder_tokens):
                stop += 1
            ids = torch.tensor([keys[u] for u in inputs[start:stop]], dtype=torch.long, device=self.device)
            hidden.append(encoder(input_ids=ids).last_hidden_state.reshape(-1, model.config.d_model))
            start = stop
        packed = torch.cat(hidden)[None]
        rows = [row for u in inputs for row in users[u]]
        width = max(len(labels[row]) for row in rows)
        label_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        label_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for i, row in enumerate(rows):
            label_ids[i, : len(labels[row])] = torch.as_tensor(labels[row])
            label_mask[i, : len(labels[row])] = True
        label_ids, label_mask = label_ids.to(self.device), label_mask.to(self.device)
        shared = SharedSources([len(keys[u]) for u in inputs], [len(users[u]) for u in inputs])
        states = model.get_decoder()(input_ids=model._shift_right(label_ids), encoder_hidden_states=packed,
                                     shared_sources=shared, use_cache=False).last_hidden_state
        states, targets = states[label_mask], label_ids[label_mask]
        log_probs = torch.empty(len(targets), dtype=torch.float32, device=self.device)
        for a in range(0, len(targets), LOGIT_ROWS):
            logits = model.lm_head(states[a : a + LOGIT_ROWS]).float()
            log_probs[a : a + LOGIT_ROWS] = torch.log_softmax(logits, dim=1).gather(
                1, targets[a : a + LOGIT_ROWS, None]).squeeze(1)
        per_token = torch.zeros(label_mask.shape, dtype=torch.float32, device=self.device)
        per_token[label_mask] = log_probs
        total = per_token.sum(dim=1)
        batch_scores = total / label_mask.sum(dim=1) if self.aggregation == "mean" else total
        scores = np.empty(len(sources))
        scores[rows] = batch_scores.cpu().numpy().astype(np.float64)
        return scores

    def score(self, pairs: Sequence[tuple[Question, Passage]], progress: bool = True) -> np.ndarray:
        """Scores of (question, passage) pairs, batched by length; NaN/inf is an error."""
        if not pairs:
            return np.zeros(0)
        sources, labels = self.tokenize(pairs)
        # By encoder length, then encoder input (equal inputs adjacent, so a batch shares them), then label length.
        source_id: dict[tuple[int, ...], int] = {}
        keys = [source_id.setdefault(tuple(s), len(source_id)) for s in sources]
        order = sorted(range(len(pairs)), key=lambda r: (len(sources[r]), keys[r], len(labels[r]), r))
        scores = np.empty(len(pairs))
        bar = tqdm(total=len(pairs), desc="rerank", unit="pair", disable=not progress, mininterval=5)
        start = 0
        while start < len(order):
            # Grow the batch while the padded size stays within the token budget.
            stop, width = start, 0
            while stop < len(order):
                r = order[stop]
                new_width = max(width, len(sources[r]) + len(labels[r]))
                if stop > start and new_width * (stop - start + 1) > self.batch_tokens:
                    break
                width, stop = new_width, stop + 1
            rows = order[start:stop]
            scores[rows] = self.score_batch([sources[r] for r in rows], [labels[r] for r in rows])
            bar.update(len(rows))
            start = stop
        bar.close()
        bad = ~np.isfinite(scores)
        if bad.any():
            q, p = pairs[int(np.argmax(bad))]
            dtype = str(self.model.dtype).removeprefix("torch.")
            advice = ("rerun with rerank.dtype: fp32" if dtype != "float32"
                      else "the model's weights or inputs are broken (NaN/inf even in fp32)")
            raise UMRError(f"reranker produced {int(bad.sum())} non-finite score(s) computing in {dtype}, e.g. question "
                           f"{q.id} passage {p.id}; {advice} (mT5 overflows in fp16)")
        return scores


def load_cache(paths: Iterable[str | Path]) -> dict[tuple[str, str], float]:
    """(question id, passage id) -> score from earlier reranked runs with the same settings."""
    cache: dict[tuple[str, str], float] = {}
    for path in paths:
        for qid, ranked in read_trec_run(path).items():
            for docid, score in ranked:
                cache[(qid, docid)] = score
    return cache


# Pairs per resumable part (`rerank_run(..., resume_out=...)`): minutes of GPU work each at paper scale.
PART_PAIRS = 20_000


def rerank_run(reranker: Reranker, questions: Sequence[Question], run: Run, corpus: Corpus, top_k: int,
               cache: dict[tuple[str, str], float] | None = None, resume_out: str | Path | None = None,
               part_pairs: int = PART_PAIRS) -> Run:
    """Rerank each question's top-k; returns the reranked run (LM scores, best first).

    With `resume_out` (the output path), the pairs are scored in parts of about
    `part_pairs` pairs (whole questions, in order), each saved in
    `<resume_out>.parts/` when done (`umr.io.PartsDir`): a rerun after a kill
    scores only the unfinished parts. The caller removes the parts once the output
    is written. Parts of another model, setting or input are discarded.
    """
    cache = cache or {}
    todo: list[tuple[Question, str]] = []
    for q in questions:
        if q.id not in run:
            raise UMRError(f"question {q.id} has no retrieved passages in the run")
        if len(run[q.id]) < top_k:
            raise UMRError(f"question {q.id} has {len(run[q.id])} retrieved passages, fewer than top-k {top_k}")
        todo.extend((q, docid) for docid, _ in run[q.id][:top_k] if (q.id, docid) not in cache)
    log.info("%d pairs to score, %d reused from earlier reranking", len(todo), len(questions) * top_k - len(todo))
    if resume_out is None:
        passages = corpus.get_many([docid for _, docid in todo])
        fresh = reranker.score([(q, p) for (q, _), p in zip(todo, passages)])
    else:
        fresh = _score_in_parts(reranker, todo, corpus, resume_out, part_pairs)
    scores = dict(cache)
    scores.update({(q.id, docid): float(s) for (q, docid), s in zip(todo, fresh)})
    out: Run = {}
    for q in questions:
        ranked = [(docid, scores[(q.id, docid)]) for docid, _ in run[q.id][:top_k]]
        # Stable sort: ties keep the retriever's order.
        out[q.id] = sorted(ranked, key=lambda item: -item[1])
    return out


def _score_in_parts(reranker: Reranker, todo: Sequence[tuple[Question, str]], corpus: Corpus,
                    out: str | Path, part_pairs: int) -> np.ndarray:
    """Scores of `todo`, computed part by part; finished parts are read back from `<out>.parts/`."""
    # Parts hold whole questions (pairs of a question are contiguous in `todo`).
    bounds, start = [], 0
    while start < len(todo):
        stop = min(start + max(1, part_pairs), len(todo))
        while stop < len(todo) and todo[stop][0].id == todo[stop - 1][0].id:
            stop += 1
        bounds.append((start, stop))
        start = stop
    model = reranker.model
    parts = PartsDir(out, {
        "stage": "rerank", "model": model_identity(model), "dtype": str(next(model.parameters()).dtype),
        "device": reranker.device.type, "template": [reranker.template.encoder, reranker.template.label],
        "aggregation": reranker.aggregation, "max_input_length": reranker.max_input_length,
        "max_label_length": reranker.max_label_length, "batch_tokens": reranker.batch_tokens,
        "corpus": [str(corpus.path.resolve()), path_identity(corpus.path)], "part_pairs": part_pairs,
        "pairs": fingerprint_items((q.id, q.text, q.lang, docid) for q, docid in todo),  # streamed: same value
    })
    done = set(parts.done())
    if done:
        log.info("resuming: %d of %d parts already scored in %s", len(done), len(bounds), parts.path)
    scores = np.empty(len(todo))
    for start, stop in bounds:
        name = f"pairs-{start:010d}-{stop:010d}.tsv"
        pairs = [(q.id, docid) for q, docid in todo[start:stop]]
        if name in done:
            saved = _read_part(parts.file(name), pairs)
            if saved is not None:
                scores[start:stop] = saved
                continue
        passages = corpus.get_many([docid for _, docid in todo[start:stop]])
        scores[start:stop] = reranker.score([(q, p) for (q, _), p in zip(todo[start:stop], passages)])
        with parts.write(name) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            handle.writelines(f"{qid}\t{docid}\t{score!r}\n" for (qid, docid), score
                              in zip(pairs, scores[start:stop].tolist()))
    return scores


def _read_part(path: Path, pairs: list[tuple[str, str]]) -> np.ndarray | None:
    """Scores of a finished part, or None (with a warning) if it does not hold exactly `pairs`."""
    try:
        rows = [line.rstrip("\n").split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        if [(r[0], r[1]) for r in rows] == pairs and all(len(r) == 3 for r in rows):
            return np.array([float(r[2]) for r in rows])
    except (OSError, ValueError, IndexError):
        pass
    log.warning("%s: unreadable or not the expected pairs; scoring it again", path)
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.rerank", description="Rerank the top-k of one language (or several) with a seq2seq LM.")
    p.add_argument("--model", required=True, help="hub name or local seq2seq checkpoint")
    p.add_argument("--template", default="official", choices=sorted(TEMPLATES))
    p.add_argument("--aggregation", default="mean", choices=AGGREGATIONS)
    p.add_argument("--run", required=True, help="retriever TREC run")
    p.add_argument("--questions", required=True, help="XOR-TyDi JSONL questions")
    p.add_argument("--lang", required=True, nargs="+",
                   help="question language(s) to rerank, one --out each: one process and one model load for several")
    p.add_argument("--top-k", type=int, required=True)
    p.add_argument("--corpus", required=True)
    p.add_argument("--offsets", required=True)
    p.add_argument("--cache", nargs="*", default=[], help="reranked runs of earlier iterations with the same settings")
    p.add_argument("--chunk", type=int, default=0)
    p.add_argument("--num-chunks", type=int, default=1)
    p.add_argument("--batch-tokens", type=int, default=16384, help="padded tokens per batch")
    p.add_argument("--part-pairs", type=int, default=PART_PAIRS,
                   help="pairs per resumable part (finished parts survive a killed job in <out>.parts/)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, nargs="+", help="reranked TREC run of each --lang (and chunk)")
    return p


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    if len(args.lang) != len(args.out):
        raise UMRError(f"--lang names {len(args.lang)} language(s) but --out {len(args.out)} file(s): one each")
    questions = read_questions(args.questions)
    by_lang = {lang: [q for q in questions if q.lang == lang] for lang in args.lang}
    missing = [lang for lang, qs in by_lang.items() if not qs]
    if missing:
        raise UMRError(f"{args.questions}: no questions in language{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(map(repr, missing))}")
    run = read_trec_run(args.run)
    reranker = Reranker(args.model, args.template, args.aggregation, args.device, args.dtype,
                        batch_tokens=args.batch_tokens)
    cache = load_cache(args.cache)
    with Corpus(args.corpus, args.offsets, source=args.run) as corpus:
        # Languages one after another, each exactly as its own job would score it.
        for lang, out in zip(args.lang, args.out):
            start, stop = shard_rows(len(by_lang[lang]), args.chunk, args.num_chunks)
            reranked = rerank_run(reranker, by_lang[lang][start:stop], run, corpus, args.top_k, cache,
                                  resume_out=out, part_pairs=args.part_pairs)
            with atomic_file(out) as tmp:
                write_trec_run(tmp, reranked, "rerank")
            shutil.rmtree(parts_path(out), ignore_errors=True)
            log.info("wrote %s (%d questions)", out, len(reranked))


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
