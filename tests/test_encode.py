"""Encoding with the retriever: the inference-only oneDNN products give the stock embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from umr.corpus import Corpus
from umr.encode import DualEncoder, encode_ids, encode_questions
from umr.fastlm import OneDNNLinear, use_onednn_linear
from umr.records import read_questions


def test_onednn_encoders_give_the_stock_embeddings(tiny_retriever, mini_data):
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = corpus.by_rows(range(30))
    questions = [q.text for q in read_questions(mini_data["xor_retrieve_dev"])]
    stock, fast = DualEncoder.load(str(tiny_retriever)), DualEncoder.load(str(tiny_retriever))
    use_onednn_linear(fast.passage_model)
    use_onednn_linear(fast.query_model)
    if not any(isinstance(m, OneDNNLinear) for m in fast.passage_model.modules()):
        pytest.skip("no oneDNN in this torch build")
    ids = stock.tokenize_passages(passages)
    np.testing.assert_allclose(encode_ids(fast.passage_model, ids, 0, batch_size=7, progress=False),
                               encode_ids(stock.passage_model, ids, 0, batch_size=7, progress=False), atol=1e-5, rtol=0)
    np.testing.assert_allclose(encode_questions(fast, questions), encode_questions(stock, questions), atol=1e-5, rtol=0)
