"""Item 2: passage encoding (umr.encode: length-sorted batches, dynamic padding, oneDNN products
as `python -m umr.encode` runs them) against the official code's fixed padding to 256 tokens with
the stock model, same weights, same passages, same batch size."""

from __future__ import annotations

import random
from typing import Any

N_PASSAGES = 384  # three batches of 128
BATCH_SIZE = 128  # umr.encode's default
FIXED_LENGTH = 256  # the official code pads every passage to max_length 256


def reference(model, tokenizer, passages) -> Any:
    """Naive: input order, each batch padded to 256 tokens, masked mean pooling."""
    import torch

    out = []
    with torch.inference_mode():
        for start in range(0, len(passages), BATCH_SIZE):
            batch = passages[start : start + BATCH_SIZE]
            enc = tokenizer([p.title for p in batch], [p.text for p in batch], padding="max_length", truncation=True,
                            max_length=FIXED_LENGTH, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out.append((hidden * mask).sum(dim=1) / mask.sum(dim=1))
    return torch.cat(out).numpy()


def run(inputs, runs: int, n_passages: int = N_PASSAGES) -> dict[str, Any]:
    import numpy as np

    from bench.common import alternate
    from umr.corpus import Corpus
    from umr.encode import DualEncoder, encode_ids
    from umr.fastlm import use_onednn_linear

    encoder = DualEncoder.load(str(inputs.retriever), max_length=FIXED_LENGTH)
    model = encoder.passage_model.eval()  # the stock model, for the reference
    # The pipeline's encoder: the same weights with oneDNN products (umr.encode's _main).
    fast = DualEncoder.load(str(inputs.retriever), max_length=FIXED_LENGTH).passage_model.eval()
    use_onednn_linear(fast)
    with Corpus(inputs.data["corpus_xor_retrieve"]) as corpus:
        rows = sorted(random.Random(0).sample(range(len(corpus)), n_passages))
        passages = corpus.by_rows(rows)

    def optimised():
        # What encode_corpus_shard does per chunk: tokenize, then encode_ids (sorted, dynamic padding).
        return encode_ids(fast, encoder.tokenize_passages(passages), encoder.tokenizer.pad_token_id, BATCH_SIZE,
                          progress=False)

    lengths = [len(ids) for ids in encoder.tokenize_passages(passages)]
    timing = alternate(lambda: reference(model, encoder.tokenizer, passages), optimised, runs,
                       warmup=(lambda: reference(model, encoder.tokenizer, passages[:16]),
                               lambda: encode_ids(fast, encoder.tokenize_passages(passages[:16]),
                                                  encoder.tokenizer.pad_token_id, BATCH_SIZE, progress=False)))
    diff = float(np.abs(timing["reference_result"] - timing["optimised_result"]).max())
    return {
        "passages": n_passages, "batch_size": BATCH_SIZE, "mean_tokens": float(np.mean(lengths)),
        "max_tokens": int(max(lengths)),
        "reference_pps": n_passages / timing["reference_median_s"],
        "optimised_pps": n_passages / timing["optimised_median_s"],
        "speedup": timing["reference_median_s"] / timing["optimised_median_s"],
        "reference_s": timing["reference_s"], "optimised_s": timing["optimised_s"],
        "max_abs_diff": diff, "equal": diff <= 1e-5,
    }
