"""Faster CPU training of the toy's tiny models: the same function, faster kernels.

The toy's three trainings (the reranker LM's pre-training, the retriever's, and every
distillation) are fp32 on one CPU core and spend most of their time in `nn.Linear`
products. `optimise_for_training(model)` runs them through oneDNN instead of MKL's
sgemm, forward and backward, as `umr.fastlm` does for inference: the same fp32
products, but MKL takes a slow code path on some CPUs (about 80 vs 190 GFLOP/s per
core on an AVX-512 AMD EPYC, see `umr.fastlm`; `python -m bench.train` times the training
steps). The results differ from the stock kernels' only by float rounding
(tests/test_fasttrain.py: loss and gradients within 1e-4). It also swaps T5's multi-kernel GELU and RMS norm for torch's one-kernel ones
(`umr.fastlm.fuse_activations`, `fuse_layer_norms`).

On a GPU, in half precision or under autocast nothing changes: the stock products run.

`retain_freed_memory()` stops glibc from handing large freed blocks back to the
kernel: a training step allocates and frees the same tens of MB (the LM's 30 MB
logits), and returning them costs a page fault per 4 KB page on the next step,
about 7% of an LM step here.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from types import MethodType

import torch
import torch.nn.functional as F
from torch import nn

# ROW_ALIGN: oneDNN builds a kernel per matrix shape (about 2 ms each) and caches a limited
# number, so rows are padded to a multiple of it (as for inference): a run with many batch
# lengths needs a few hundred kernels. Zero rows change no product and no gradient.
from umr.fastlm import ROW_ALIGN, _onednn_linear_available, fuse_activations, fuse_layer_norms


def _onednn(rows: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """rows @ weight.T (+ bias) by oneDNN; `rows` and `weight` may be transposed views."""
    return torch.ops.mkldnn._linear_pointwise(rows, weight, bias, "none", [], "")


def _aligned(rows: torch.Tensor) -> torch.Tensor:
    pad = -rows.shape[0] % ROW_ALIGN
    return F.pad(rows, (0, 0, 0, pad)) if pad else rows


class _OneDNNLinearFunction(torch.autograd.Function):
    """y = x Wᵀ + b with its three gradients (dx = dy W, dW = dyᵀ x, db = Σ dy), each a oneDNN product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = _aligned(x.reshape(-1, x.shape[-1]))
        ctx.save_for_backward(rows, weight)
        ctx.shape, ctx.has_bias = x.shape, bias is not None
        out = _onednn(rows, weight, bias)[: x.numel() // x.shape[-1]]
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        rows, weight = ctx.saved_tensors
        grad_rows = _aligned(grad.reshape(-1, grad.shape[-1]).contiguous())
        m = grad.numel() // grad.shape[-1]
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn(grad_rows, weight.t().contiguous(), None)[:m].view(ctx.shape)
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn(grad_rows.t(), rows.t(), None)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_rows.sum(0)
        return grad_x, grad_weight, grad_bias


def _onednn_linear_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype != torch.float32 or x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return F.linear(x, self.weight, self.bias)
    return _OneDNNLinearFunction.apply(x, self.weight, self.bias)


def use_onednn_training_linear(model: nn.Module) -> int:
    """Compute every fp32 CPU `nn.Linear` of `model` with oneDNN, forward and backward; returns how many.

    The modules keep their type and parameters (state dicts, `save_pretrained` and
    optimizers see no difference); only their `forward` changes.
    """
    if not _onednn_linear_available():
        return 0
    count = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.device.type == "cpu" and module.weight.dtype == torch.float32:
            module.forward = MethodType(_onednn_linear_forward, module)
            count += 1
    return count


def optimise_for_training(model: nn.Module) -> nn.Module:
    """`use_onednn_training_linear`, and T5's GELU and RMS norm as one kernel each; returns `model`."""
    fuse_activations(model)
    fuse_layer_norms(model)
    use_onednn_training_linear(model)
    return model


def retain_freed_memory() -> bool:
    """Keep freed heap memory in the process (glibc `mallopt`); False where that is not glibc."""
    path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(path)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # Blocks up to 32 MB (glibc's largest mmap threshold) come from the heap, and the heap
    # is trimmed only when 1 GB lies free at its top.
    return bool(mallopt(m_trim_threshold, 1 << 30)) and bool(mallopt(m_mmap_threshold, 1 << 25))
