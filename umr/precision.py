"""Mixed precision: one setting (`auto|bf16|fp16|fp32`), resolved per job for its device.

Encoding, retrieval's question encoding, distillation and mGenQ's contrastive training
run their forward passes under `torch.autocast` in the resolved precision; the
weights stay fp32 (the optimizer updates fp32 master weights: a model is never
`.half()`-ed), and pooling, normalisation and losses are computed in fp32.

`auto` resolves to

- bf16 on a CUDA GPU of compute capability >= 8.0 (A100, H100: native bf16),
- fp16 on an older CUDA GPU (V100: bf16 would be emulated, slowly), with a dynamic
  loss scale (`GradScaler`) when training, as the official code's `--fp16` (apex AMP),
- fp32 on the CPU, so CPU runs (the toy, the tests) compute exactly what they did
  before this setting existed.

Models that overflow in fp16 (mT5/mT0: their feed-forward activations exceed fp16's
65504) are resolved with `fp16_safe=False`: `auto` on a pre-Ampere GPU is then fp32,
and an explicit fp16 is an error. The reranker and the question generator load their
weights in the resolved type (`how="weights"`), as they did before.

On CUDA, TF32 is allowed for the fp32 matmuls and convolutions that remain (the loss,
or everything under fp32): Ampere and later compute them with 10-bit mantissas in
tensor cores, about what the official code's fp16 training tolerated anyway.

Explicit bf16 works on the CPU (CPU autocast supports it; the CPU rehearsal of the paper
configuration uses it); explicit fp16 on the CPU needs a torch whose CPU autocast takes
fp16 (2.4 and later), else it is a one-line error naming the setting.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from umr.errors import UMRError
from umr.io import log

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# Native bf16 tensor cores arrive with Ampere (sm_80); below it bf16 is emulated.
BF16_CAPABILITY = (8, 0)
# TF32 tensor cores arrive with Ampere too: on older GPUs the flag changes nothing.
TF32_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class Precision:
    """A resolved precision: `name` is bf16, fp16 or fp32 (never auto)."""

    name: str
    requested: str
    device_type: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def mixed(self) -> bool:
        """Whether forward passes run under autocast (else plain fp32)."""
        return self.name != "fp32"

    def autocast(self) -> AbstractContextManager:
        """The forward passes' context: autocast to bf16/fp16, or nothing for fp32."""
        if not self.mixed:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A dynamic loss scale for fp16; for bf16/fp32 a disabled scaler, i.e. a no-op.

        fp16's smallest normal number is 6e-5 (subnormals down to 6e-8): small gradients
        underflow to zero unless the loss is scaled up first and the gradients scaled back
        down (in fp32) before clipping and the step. bf16 has fp32's exponent range, so
        it needs no scale. A disabled scaler has the same interface (`scale` returns the
        loss, `unscale_` and `update` do nothing, `step` calls `optimizer.step()`, its
        state dict is empty), so the training loop is one code path, exact in fp32.
        """
        return torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """Compute capability (major, minor) of a CUDA device (tests fake it)."""
    return tuple(torch.cuda.get_device_capability(device))


def allow_tf32() -> None:
    """TF32 for fp32 matmuls and cuDNN convolutions on CUDA (the legacy flags: they touch only CUDA)."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def cpu_autocast_supports(dtype: torch.dtype) -> bool:
    """Whether CPU autocast runs in `dtype` (older torch warns and silently disables it for fp16)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with torch.autocast("cpu", dtype=dtype):
                return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == dtype
        except (RuntimeError, TypeError, AttributeError):
            return False


# Lines already logged in this process: a job logs its precision once, however often it resolves it.
_LOGGED: set[str] = set()


def _once(level: int, message: str) -> None:
    if message not in _LOGGED:
        _LOGGED.add(message)
        log.log(level, message)


def resolve_precision(requested: "str | Precision", device: torch.device | str, *, fp16_safe: bool = True,
                      what: str = "precision", how: str = "autocast") -> Precision:
    """The concrete precision for the `requested` setting on `device`; logs the choice once at INFO.

    `fp16_safe=False` for models that overflow in fp16 (mT5/mT0): `auto` then never picks
    fp16, and fp16 itself is refused. `what` names the setting in messages ("precision",
    "reranker dtype", ...); `how` says how it is applied ("autocast" for forward passes over
    fp32 weights, "weights" for models loaded in that type). An already resolved
    `Precision` is returned as it is, so functions take either.
    """
    if isinstance(requested, Precision):
        return requested
    if requested not in PRECISIONS:
        raise UMRError(f"unknown {what} {requested!r}; choose from {', '.join(PRECISIONS)}")
    device = torch.device(device)
    capability = cuda_capability(device) if device.type == "cuda" else None
    where = f"cuda device capability {capability[0]}.{capability[1]}" if capability else device.type
    if requested != "auto":
        name = requested
    elif capability is None:
        name = "fp32"  # CPU: bit-identical to the code before mixed precision
    elif capability >= BF16_CAPABILITY:
        name = "bf16"
    else:
        name = "fp16" if fp16_safe else "fp32"
    if name == "fp16" and not fp16_safe:
        raise UMRError(f"{what} fp16: this model (mT5/mT0) overflows in fp16; choose auto, bf16 or fp32")
    if how == "autocast" and name != "fp32":
        if not torch.amp.is_autocast_available(device.type):
            raise UMRError(f"{what} {name}: torch has no autocast for {device.type} devices; use fp32")
        if device.type == "cpu" and not cpu_autocast_supports(DTYPES[name]):
            raise UMRError(f"{what} {name}: this torch's CPU autocast does not support {name} "
                           f"(torch {torch.__version__}); use bf16 or fp32 on the CPU")
    extra = ""
    if capability is not None:
        allow_tf32()
        if capability >= TF32_CAPABILITY and name == "fp32":
            extra = ", TF32 matmuls"
        if name == "bf16" and capability < BF16_CAPABILITY:
            _once(logging.WARNING, f"{what} bf16 on a GPU of compute capability {capability[0]}.{capability[1]} "
                                   "(< 8.0): bf16 is emulated there, slowly; auto would choose "
                                   f"{'fp16' if fp16_safe else 'fp32'}")
    label = f"{name} {how}" if name != "fp32" else "fp32"
    _once(logging.INFO, f"{what}: {label}{extra} (requested {requested}; {where})")
    return Precision(name, requested, device.type)
