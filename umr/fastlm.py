"""Inference-only surgery on a (m)T5 model: the same function, fewer and faster kernels.

(`use_onednn_linear` alone also serves the retriever's BERT encoders when they only
encode: `python -m umr.encode` and `python -m umr.retrieve`; `fuse_activations` and
`fuse_layer_norms` are differentiable and also serve training, `umr.fasttrain`.)

`optimise_for_inference(model)` rewrites a loaded model in place; every change is an
exact reformulation in the model's own dtype (the results differ from the stock
model's only by float rounding, tests/test_rerank.py):

- `gelu_new` (five element-wise kernels) becomes torch's one-kernel tanh GELU;
- T5's RMS layer norm (several element-wise kernels) becomes one `rms_norm` kernel,
  computed in fp32 as T5 does (fp32 weights only; half-precision models keep theirs);
- on CPU in fp32, every `nn.Linear` runs through oneDNN (`OneDNNLinear`) instead of
  MKL's sgemm: the same fp32 product, but MKL takes a slow code path on some CPUs
  (about 80 vs 190 GFLOP/s per core at the reranker's shapes on an AVX-512 AMD EPYC),
  the gated feed-forward's tanh GELU fused into its `wi_0` product;
- the gated feed-forward runs `FF_ROWS` token rows at a time (it is row-wise):
  its [rows, d_ff] intermediates then stay in cache, about twice as fast on CPU;
- cross-attention can read distinct encoder inputs of different lengths, packed
  without padding (`SharedSources`): the decoder gets `encoder_hidden_states` of the
  distinct inputs packed into one sequence and `shared_sources=`, which says which
  decoder rows read which input; keys and values are projected once per input, and
  the queries of all rows that read the same input attend to it in one call. T5's
  cross-attention has no position bias and (no padding) no mask, so every query
  attends exactly as before.
  Without `shared_sources` (or with a mask or a cache) the stock forward runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import GELUTanh, NewGELUActivation


def fuse_activations(model: nn.Module) -> None:
    """Swap mT5's `gelu_new` (five element-wise kernels) for torch's one-kernel tanh GELU: the same function."""
    for module in model.modules():
        if isinstance(getattr(module, "act", None), NewGELUActivation):
            module.act = GELUTanh()


# Token rows per feed-forward block (`chunk_feed_forward`): [rows, d_ff] fp32 intermediates of a
# few MB stay in a core's cache, where a whole batch's would not.
FF_ROWS = 1024


def _gated_ff_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """T5DenseGatedActDense.forward (eval): wo(act(wi_0 x) * wi_1 x), `FF_ROWS` rows at a time."""
    if self.training:  # dropout between the product and wo
        return type(self).forward(self, hidden_states)
    flat = hidden_states.reshape(-1, hidden_states.shape[-1])
    if flat.shape[0] <= FF_ROWS:
        return self.wo(self.act(self.wi_0(flat)).mul_(self.wi_1(flat))).view(*hidden_states.shape[:-1], -1)
    out = flat.new_empty(flat.shape[0], self.wo.out_features)
    for a in range(0, flat.shape[0], FF_ROWS):
        rows = flat[a : a + FF_ROWS]
        out[a : a + FF_ROWS] = self.wo(self.act(self.wi_0(rows)).mul_(self.wi_1(rows)))
    return out.view(*hidden_states.shape[:-1], -1)


def chunk_feed_forward(model: nn.Module) -> None:
    """Run every gated feed-forward (wi_0, wi_1, act, wo; same dtype throughout) in row blocks: the same function."""
    for module in model.modules():
        if all(hasattr(module, name) for name in ("wi_0", "wi_1", "wo", "act")) and (
                module.wi_0.weight.dtype == module.wo.weight.dtype):
            module.forward = _gated_ff_forward.__get__(module)


def _rms_norm_forward(self: nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """T5LayerNorm.forward (x * rsqrt(mean(x^2) + eps) * weight, fp32) as one kernel."""
    return F.rms_norm(hidden_states, self.weight.shape, self.weight, self.variance_epsilon)


def fuse_layer_norms(model: nn.Module) -> None:
    """Compute every fp32 T5-style RMS layer norm (a `variance_epsilon` and a weight, no bias) with `F.rms_norm`."""
    for module in model.modules():
        if (type(module).__name__.endswith("LayerNorm") and hasattr(module, "variance_epsilon")
                and getattr(module, "bias", None) is None and module.weight.dtype == torch.float32):
            module.forward = _rms_norm_forward.__get__(module)


def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


# oneDNN builds (JIT-compiles) a kernel per matrix shape, about 2 ms each, and caches a
# limited number: rows are therefore multiplied in blocks of ROW_BLOCK, the last padded
# to a multiple of ROW_ALIGN, so that a whole job uses a few dozen shapes, not one per batch.
ROW_BLOCK = 1024
ROW_ALIGN = 64


class OneDNNLinear(nn.Module):
    """`nn.Linear` (fp32, CPU) computed by oneDNN's matmul; shares the original's parameters.

    Rows are independent: padding and splitting them (`ROW_BLOCK`) changes nothing but speed.

    `activation="gelu_tanh"` applies the tanh GELU to the product in the same kernel
    (a oneDNN post-op: no separate pass over the output).
    """

    POST_OPS = {"none": ("none", ""), "gelu_tanh": ("gelu", "tanh")}

    def __init__(self, linear: nn.Linear, activation: str = "none"):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        self.activation = activation
        self._post_op, self._algorithm = self.POST_OPS[activation]

    def _product(self, rows: torch.Tensor) -> torch.Tensor:
        """The product of at most ROW_BLOCK rows, computed on a multiple of ROW_ALIGN rows (zero rows appended)."""
        m = rows.shape[0]
        pad = -m % ROW_ALIGN
        if pad:
            rows = F.pad(rows, (0, 0, 0, pad))
        out = torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, self._post_op, [], self._algorithm)
        return out[:m] if pad else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        if flat.shape[0] <= ROW_BLOCK:
            out = self._product(flat)
        else:
            out = flat.new_empty(flat.shape[0], self.out_features)
            for a in range(0, flat.shape[0], ROW_BLOCK):
                out[a : a + ROW_BLOCK] = self._product(flat[a : a + ROW_BLOCK])
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"activation={self.activation}")


def use_onednn_linear(model: nn.Module) -> None:
    """Replace every fp32 CPU `nn.Linear` of `model` by an `OneDNNLinear` over the same weights.

    A gated feed-forward's `act(wi_0(x))` with the tanh GELU becomes one fused
    `wi_0` (its `act` then the identity).
    """
    if not _onednn_linear_available():
        return
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (type(child) is nn.Linear and child.weight.device.type == "cpu"
                    and child.weight.dtype == torch.float32):
                setattr(parent, name, OneDNNLinear(child))
    for module in model.modules():
        gate = getattr(module, "wi_0", None)
        if (isinstance(gate, OneDNNLinear) and gate.activation == "none"
                and isinstance(getattr(module, "act", None), (GELUTanh, NewGELUActivation))):
            module.wi_0 = OneDNNLinear(gate, "gelu_tanh")
            module.act = nn.Identity()


class SharedSources:
    """Which decoder rows read which encoder input, for a decoder call over inputs of any lengths.

    The encoder inputs' states are packed one after the other into one sequence
    (`encoder_hidden_states` of shape [1, sum(lengths), d_model]); input k has
    `lengths[k]` tokens and is read by the next `counts[k]` decoder rows, in input
    order. Consecutive inputs of the same length and row count form one attention
    call: keys [inputs, length] and, per input, its rows' queries as one sequence.
    Ordering the inputs by (length, count) makes these calls few.
    """

    def __init__(self, lengths: Sequence[int], counts: Sequence[int]):
        if len(lengths) != len(counts) or not counts or min(counts) < 1 or min(lengths) < 1:
            raise ValueError("every encoder input needs a length and at least one decoder row")
        self.rows, self.tokens = sum(counts), sum(lengths)
        # (first row, first token, inputs, length, rows per input)
        self.groups: list[tuple[int, int, int, int, int]] = []
        row = token = 0
        for length, n in zip(lengths, counts):
            if self.groups and self.groups[-1][3:] == (length, n):
                first_row, first_token, inputs, _, _ = self.groups[-1]
                self.groups[-1] = (first_row, first_token, inputs + 1, length, n)
            else:
                self.groups.append((row, token, 1, length, n))
            row, token = row + n, token + length


def _shared_cross_attention(self: nn.Module, hidden_states: torch.Tensor, key_value_states: torch.Tensor,
                            shared: SharedSources) -> torch.Tensor:
    """T5Attention's cross-attention (no position bias, no mask, eval) over packed encoder inputs."""
    length = hidden_states.shape[1]
    heads, head_dim = self.n_heads, self.key_value_proj_dim
    query = self.q(hidden_states)  # [rows, length, heads * head_dim]
    packed = key_value_states.reshape(-1, key_value_states.shape[-1])
    key, value = self.k(packed), self.v(packed)  # [tokens, heads * head_dim], once per input
    out = torch.empty_like(query)
    for first_row, first_token, inputs, source_length, n in shared.groups:
        rows = slice(first_row, first_row + inputs * n)
        tokens = slice(first_token, first_token + inputs * source_length)
        # The n rows of one input: one sequence of n * length queries.
        q = query[rows].reshape(inputs, n * length, heads, head_dim).transpose(1, 2)
        k = key[tokens].view(inputs, source_length, heads, head_dim).transpose(1, 2)
        v = value[tokens].view(inputs, source_length, heads, head_dim).transpose(1, 2)
        attended = F.scaled_dot_product_attention(q, k, v, scale=self.scaling)
        out[rows] = attended.transpose(1, 2).reshape(inputs * n, length, heads * head_dim)
    return self.o(out)


def _make_cross_attention_forward(attention: nn.Module):
    stock = attention.forward

    def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None, cache=None,
                shared_sources: SharedSources | None = None, **kwargs):
        if (shared_sources is None or key_value_states is None or mask is not None or cache is not None
                or self.training or self.has_relative_attention_bias):
            return stock(hidden_states, mask=mask, key_value_states=key_value_states, position_bias=position_bias,
                         cache=cache, **kwargs)
        if (shared_sources.rows, shared_sources.tokens) != (hidden_states.shape[0], key_value_states[..., 0].numel()):
            raise ValueError(f"shared_sources covers {shared_sources.rows} rows and {shared_sources.tokens} encoder "
                             f"tokens, the decoder has {hidden_states.shape[0]} and {key_value_states[..., 0].numel()}")
        return _shared_cross_attention(self, hidden_states, key_value_states, shared_sources), None, None

    return MethodType(forward, attention)


def share_cross_attention_inputs(model: nn.Module) -> None:
    """Let every T5 cross-attention take `shared_sources=SharedSources(...)` (see the module docstring)."""
    for module in model.modules():
        attention = getattr(module, "EncDecAttention", None)
        if attention is not None and hasattr(attention, "key_value_proj_dim"):
            attention.forward = _make_cross_attention_forward(attention)


def optimise_for_inference(model: nn.Module) -> nn.Module:
    """Rewrite an eval-mode (m)T5 model in place for fast inference; it computes the same function."""
    fuse_activations(model)
    fuse_layer_norms(model)
    use_onednn_linear(model)
    chunk_feed_forward(model)
    share_cross_attention_inputs(model)
    return model
