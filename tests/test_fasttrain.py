"""Training through oneDNN (umr.fasttrain): the stock model's loss and gradients, up to fp32 rounding."""

from __future__ import annotations

import copy
import platform

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel, MT5Config, MT5ForConditionalGeneration

from umr.fastlm import _onednn_linear_available
from umr.fasttrain import ROW_ALIGN, optimise_for_training, retain_freed_memory, use_onednn_training_linear

needs_onednn = pytest.mark.skipif(not _onednn_linear_available(), reason="no oneDNN in this torch build")


def _max_grad_gap(a: nn.Module, b: nn.Module) -> float:
    pairs = [(p.grad, q.grad) for p, q in zip(a.parameters(), b.parameters())]
    assert all((g is None) == (h is None) for g, h in pairs)
    return max((g - h).abs().max().item() for g, h in pairs if g is not None)


@needs_onednn
def test_linear_forward_and_all_three_gradients_match_nn_linear():
    torch.manual_seed(0)
    stock = nn.Linear(24, 40)
    fast = copy.deepcopy(stock)
    assert use_onednn_training_linear(fast) == 1
    # 3 x 7 = 21 rows: not a multiple of ROW_ALIGN, so padding is exercised
    x = torch.randn(3, 7, 24)
    assert (3 * 7) % ROW_ALIGN != 0
    x_stock, x_fast = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_stock, out_fast = stock(x_stock), fast(x_fast)
    assert out_fast.shape == (3, 7, 40)
    torch.testing.assert_close(out_fast, out_stock, atol=1e-5, rtol=0)
    grad = torch.randn(3, 7, 40)
    out_stock.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(x_fast.grad, x_stock.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.weight.grad, stock.weight.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(fast.bias.grad, stock.bias.grad, atol=1e-5, rtol=0)


@needs_onednn
def test_frozen_weight_and_no_bias():
    torch.manual_seed(1)
    stock = nn.Linear(16, 8, bias=False)
    stock.weight.requires_grad_(False)
    fast = copy.deepcopy(stock)
    use_onednn_training_linear(fast)
    x_stock = torch.randn(70, 16, requires_grad=True)
    x_fast = x_stock.detach().clone().requires_grad_()
    stock(x_stock).sum().backward()
    fast(x_fast).sum().backward()
    torch.testing.assert_close(x_fast.grad, x_stock.grad, atol=1e-5, rtol=0)
    assert fast.weight.grad is None


def _t5(dropout: float = 0.0) -> MT5ForConditionalGeneration:
    torch.manual_seed(0)
    config = MT5Config(vocab_size=300, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                       feed_forward_proj="gated-gelu", dropout_rate=dropout, tie_word_embeddings=False,
                       decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    return MT5ForConditionalGeneration(config)


@needs_onednn
def test_t5_training_step_matches_the_stock_model():
    stock = _t5()
    fast = optimise_for_training(copy.deepcopy(stock))
    x, y = torch.randint(2, 300, (5, 13)), torch.randint(2, 300, (5, 6))
    losses = []
    for model in (stock, fast):
        model.train()
        logits = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=0.1)
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], abs=1e-5)
    assert _max_grad_gap(stock, fast) < 1e-4


@needs_onednn
def test_bert_training_step_matches_the_stock_model():
    torch.manual_seed(0)
    stock = BertModel(BertConfig(vocab_size=200, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    fast = optimise_for_training(copy.deepcopy(stock))
    x = torch.randint(3, 200, (6, 11))
    mask = torch.ones_like(x)
    mask[2, 7:] = 0  # padding, as in a length-bucketed batch
    for model in (stock, fast):
        model.train()
        model(input_ids=x, attention_mask=mask).last_hidden_state.pow(2).mean().backward()
    assert _max_grad_gap(stock, fast) < 1e-5


@needs_onednn
def test_module_types_parameters_and_checkpoints_are_unchanged(tmp_path):
    model = optimise_for_training(_t5())
    assert not any(type(m).__name__.startswith("OneDNN") for m in model.modules())
    keys = set(_t5().state_dict())
    assert set(model.state_dict()) == keys
    model.save_pretrained(tmp_path)
    reloaded = MT5ForConditionalGeneration.from_pretrained(tmp_path)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


@needs_onednn
def test_stock_product_under_autocast_and_in_other_dtypes():
    torch.manual_seed(2)
    fast = nn.Linear(8, 4)
    use_onednn_training_linear(fast)
    x = torch.randn(3, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(x).dtype == torch.bfloat16  # autocast's own product, not oneDNN's fp32 one
    double = copy.deepcopy(fast).double()
    torch.testing.assert_close(double(x.double()), F.linear(x.double(), double.weight, double.bias))


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_retain_freed_memory_applies_on_glibc():
    assert retain_freed_memory() is True
