"""The tiny stand-in models (umr.models): pre-training pieces that must not change what is computed."""

from __future__ import annotations

import json
import random

import torch
from transformers import AutoModel

from umr import models
from umr.encode import mean_pool, pad_batch


def test_length_buckets_give_the_full_batch_embeddings_in_input_order(tiny_retriever):
    model = AutoModel.from_pretrained(tiny_retriever).eval()
    rng = random.Random(0)
    # Crops of very different lengths, in no particular order (as random_crop makes them).
    views = [[2, *(rng.randrange(5, 1000) for _ in range(rng.randint(1, 40))), 3] for _ in range(13)]
    input_ids, mask = pad_batch(views, pad_id=0)
    with torch.no_grad():
        full = mean_pool(model(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask)
        bucketed = models.embed_by_length(model, views, pad_id=0, bucket_size=4)
    torch.testing.assert_close(bucketed, full, atol=1e-5, rtol=0)


def test_length_buckets_keep_the_gradient_of_every_view(tiny_retriever):
    model = AutoModel.from_pretrained(tiny_retriever).eval()
    views = [[2, 7, 8, 3], [2, 9, 3], [2, 10, 11, 12, 13, 14, 3]]
    models.embed_by_length(model, views, pad_id=0, bucket_size=1).sum().backward()
    embedding_grad = model.embeddings.word_embeddings.weight.grad
    assert all(embedding_grad[token].abs().sum() > 0 for token in (7, 9, 14))


def test_dropout_setting_reaches_the_saved_lm_config(mini_texts, tmp_path):
    out = tmp_path / "lm"
    models.pretrain_lm(mini_texts, out, vocab_size=1200, d_model=32, layers=1, heads=2, d_ff=64, steps=1,
                       batch_size=4, lr=1e-3, seed=1, dropout=0.0)
    assert json.loads((out / "config.json").read_text())["dropout_rate"] == 0.0
