"""Item 1: the reranker (umr.rerank.Reranker, rerank_run) against a UPR-style reference.

Reference (UPR's way): one question at a time, its k passages in one batch padded to
the longest of that batch, the stock Hugging Face model in fp32, score = mean
log-likelihood of the label tokens ("Question: ..." and </s>) given instruction +
passage, with the same template and truncation (512 / 128 tokens).

Candidates: questions of one language (a rerank job is one language and chunk) of the
toy XOR-Full training split, k = 60 passages each (config.yaml umr.rerank.report_top_k;
the paper reranks 100), from two runs:
- `random`: k passages drawn at random per question: next to no passage is shared by
  two questions, so this is what batching alone buys;
- `dense`: the top-k of the bench's dense retriever (item 4's shard indexes), as a
  rerank job gets them: questions that retrieved the same passage share its encoder
  pass. The gain depends on that sharing, reported as pairs per distinct passage.
"""

from __future__ import annotations

import contextlib
import io
import random
from typing import Any

LANG = "ja"
N_QUESTIONS = 8
TOP_K = 60


def upr_reference(model, tokenizer, template, groups, max_input: int = 512, max_label: int = 128):
    """Scores of [(question, [passages])], one question (one padded batch) at a time."""
    import numpy as np
    import torch

    from umr.languages import language_name

    out = []
    with torch.inference_mode():
        for question, passages in groups:
            language = language_name(question.lang)
            enc = tokenizer([template.encoder.format(title=p.title, text=p.text, language=language) for p in passages],
                            padding=True, truncation=True, max_length=max_input, return_tensors="pt")
            label = tokenizer(template.label.format(question=question.text), truncation=True, max_length=max_label,
                              return_tensors="pt")["input_ids"]
            labels = label.repeat(len(passages), 1)
            # Teacher forcing without the model's own loss (which would be extra work for the reference).
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                           decoder_input_ids=model._shift_right(labels)).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1).gather(2, labels.unsqueeze(2)).squeeze(2)
            out.append(log_probs.mean(dim=1))
    return torch.cat(out).numpy().astype(np.float64)


def candidates(inputs, questions, corpus, index_paths, top_k: int) -> dict[str, dict[str, list[str]]]:
    """question id -> k passage ids, for the `random` and `dense` runs."""
    from umr.encode import DualEncoder, encode_questions
    from umr.retrieve import search_shards

    rng = random.Random(0)
    ids = [i.decode("utf-8") for i in corpus.ids]
    runs = {"random": {q.id: [ids[r] for r in rng.sample(range(len(ids)), top_k)] for q in questions}}
    encoder = DualEncoder.load(str(inputs.retriever))
    _, rows = search_shards(encode_questions(encoder, [q.text for q in questions]), index_paths, top_k)
    runs["dense"] = {q.id: [ids[r] for r in rows[i]] for i, q in enumerate(questions)}
    return runs


def run(inputs, runs: int, index_paths: list[str], index_corpus: str, n_questions: int = N_QUESTIONS, top_k: int = TOP_K) -> dict[str, Any]:
    import time

    import numpy as np
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from bench.common import alternate, median_time
    from umr.corpus import Corpus
    from umr.records import read_questions, write_trec_run
    from umr.rerank import TEMPLATES, Reranker, load_cache, rerank_run

    questions = [q for q in read_questions(inputs.data["xor_full_train"]) if q.lang == LANG][:n_questions]
    # The pipeline's reranker (fp32 on CPU, default token budget) and the stock model for the reference.
    reranker = Reranker(str(inputs.lm), template="official", aggregation="mean", device="cpu", dtype="fp32")
    stock = AutoModelForSeq2SeqLM.from_pretrained(str(inputs.lm), dtype=torch.float32).eval()
    template = TEMPLATES["official"]
    results: dict[str, Any] = {"language": LANG, "questions": len(questions), "top_k": top_k,
                               "batch_tokens": reranker.batch_tokens}
    with Corpus(index_corpus) as corpus:
        candidate_runs = candidates(inputs, questions, corpus, index_paths, top_k)
        for name, cands in candidate_runs.items():
            groups = [(q, corpus.get_many(cands[q.id])) for q in questions]
            pairs = [(q, p) for q, ps in groups for p in ps]
            timing = alternate(lambda: upr_reference(stock, reranker.tokenizer, template, groups),
                               lambda: reranker.score(pairs, progress=False), runs,
                               warmup=(lambda: upr_reference(stock, reranker.tokenizer, template, groups[:1]),
                                       lambda: reranker.score(pairs[:top_k], progress=False)))
            diff = float(np.abs(timing["reference_result"] - timing["optimised_result"]).max())
            distinct = len({p.id for _, p in pairs})
            results[name] = {
                "pairs": len(pairs), "distinct_passages": distinct, "pairs_per_passage": len(pairs) / distinct,
                "reference_pairs_per_s": len(pairs) / timing["reference_median_s"],
                "optimised_pairs_per_s": len(pairs) / timing["optimised_median_s"],
                "speedup": timing["reference_median_s"] / timing["optimised_median_s"],
                "reference_s": timing["reference_s"], "optimised_s": timing["optimised_s"],
                "max_abs_diff": diff, "equal": diff <= 1e-4,
            }
        # Score cache: rerank_run again with the scores of the first call (as a later iteration or
        # variant with the same reranker settings gets them via --cache): no pair is scored again.
        run_in = {q.id: [(d, 0.0) for d in candidate_runs["dense"][q.id]] for q in questions}
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):  # rerank_run's progress bar
            first = rerank_run(reranker, questions, run_in, corpus, top_k)
        first_s = time.perf_counter() - start
        cache_file = inputs.workdir / "rerank-cache.trec"
        write_trec_run(cache_file, first, "rerank")
        cache = load_cache([cache_file])
        second_s, second_times, second = median_time(lambda: rerank_run(reranker, questions, run_in, corpus, top_k,
                                                                        cache=cache), runs)
        results["cache"] = {
            "pairs": sum(len(v) for v in run_in.values()), "first_call_s": first_s, "second_call_s": second_s,
            "second_call_times_s": second_times, "second_over_first": second_s / first_s,
            "same_ranking": all([d for d, _ in first[q]] == [d for d, _ in second[q]] for q in first),
        }
    return results
