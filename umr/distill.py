"""Stage 2 of UMR: knowledge-distilled retriever training.

The student (query and passage encoders, initialised from this iteration's
retriever) learns the reranker's distribution over each question's passages:

- every step takes b questions and, for each, n passages sampled at random from
  its reranked top-k (as the official code does), giving S = Q·Cᵀ of shape b × b·n;
- teacher: softmax(score / τ) over the question's own n passages; with in-batch
  negatives the other questions' passages get probability 0 (the official code
  puts log-prob -1000 there), without them the softmaxes run over own passages only;
- student: log_softmax over all b·n passages (own n without in-batch negatives);
- loss: KL(teacher ‖ student) averaged over the batch (`batchmean`, log targets).

AdamW (eps 1e-8, no weight decay), linear warmup then linear decay, gradient-norm
clipping, dropout on, a fixed seed. The gradient cache (Gao et al., 2021) computes
the same gradients as the full batch in chunks, to fit 16 × 16 passages on a GPU.
Training reads questions through `read_questions`, which has no answers: UMR never
sees answers or gold passages.

**Precision** (`--precision`, config `umr.distill.precision`; `umr.precision`): the
encoders' forward passes run under autocast (bf16 on A100/H100, fp16 on older GPUs,
fp32 on CPU for `auto`) over fp32 master weights; the representations are pooled in
fp32 and the loss is computed in fp32 outside autocast. fp16 scales the loss
(`GradScaler`: gradients unscaled before clipping, steps with inf/NaN gradients
skipped and the scale halved); its state is checkpointed with the rest.

**Checkpoints and resuming.** Every `checkpoint_every` steps (config
`umr.distill.checkpoint_every`; 0 = only on a signal) the complete training state
is saved in `<out>.checkpoints/step-<N>.pt`, next to the output directory that
the rule declares (so Snakemake neither deletes it when the job fails nor takes
it for an output): both encoders, the optimizer and scheduler, the torch (CPU and
CUDA) and Python RNG states, the `random.Random` of data order and passage
sampling with the position in the epoch's order, the step and the losses so far.
The last two checkpoints are kept; each is written atomically. Rerunning the
same command resumes from the newest one and ends with the same weights, bit for
bit, as an uninterrupted run (tests/test_resume.py). A checkpoint of another
computation (other inputs, student or settings: its fingerprint differs) is
discarded with a warning and training starts over; a truncated or corrupt one
stops the run with a one-line error naming it (delete it to resume from the
previous one). The directory is removed once the retriever is saved.

On SIGTERM or SIGUSR1 (SLURM's time limit, or the early `--signal=TERM@N` the
distill rule asks for) the trainer finishes the current step, saves a checkpoint
and exits with status 128 + signal number (after the last step it saves the
retriever instead and exits 0); Snakemake's `retries` then resubmits the job,
which resumes. SIGKILL (or a node failure) loses the steps since the last
periodic checkpoint, nothing more.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from umr.corpus import Corpus
from umr.encode import DualEncoder, device_for, embed, encode_ids, pad_batch
from umr.errors import UMRError
from umr.fasttrain import optimise_for_training, retain_freed_memory
from umr.io import (Interrupted, StopSignals, atomic_dir, atomic_file, fingerprint, fingerprint_items, log,
                    path_identity, run_cli, seed_everything, set_threads)
from umr.precision import PRECISIONS, Precision, resolve_precision
from umr.lineage import DistillSpec
from umr.records import Passage, Question, read_questions, read_trec_run

# Log-probability given to other questions' passages (official code): exp(-1000) == 0.
IN_BATCH_LOG_PROB = -1000.0


@dataclass(frozen=True)
class DistillSettings:
    temperature: float = 0.1
    batch_size: int = 16
    passages_per_question: int = 16
    in_batch_negatives: bool = True
    epochs: int = 10
    learning_rate: float = 2e-5
    warmup_steps: int = 1237
    max_grad_norm: float = 2.0
    max_length: int = 256
    seed: int = 12345
    negate_teacher: bool = False  # control run: the teacher's preferences reversed
    grad_cache: bool = False
    query_chunk_size: int = 16
    passage_chunk_size: int = 8
    # Official-code behaviours (docs/deviations.md rows 1, 3, 4); the defaults are this pipeline's.
    grad_scale: float = 1.0
    strip_question_mark: bool = False
    keep: str = "final"  # or "best_val_rank"
    val_questions: int = 0
    val_hard_negatives: int = 30


def teacher_log_probs(scores: torch.Tensor, temperature: float, in_batch_negatives: bool) -> torch.Tensor:
    """Teacher log-distribution: [b, n] scores -> [b, b·n] (in-batch) or [b, n] log-probs."""
    own = F.log_softmax(scores / temperature, dim=-1)
    if not in_batch_negatives:
        return own
    b, n = scores.shape
    full = torch.full((b, b * n), IN_BATCH_LOG_PROB, dtype=own.dtype, device=own.device)
    for i in range(b):
        full[i, i * n : (i + 1) * n] = own[i]
    return full


def student_log_probs(query_reps: torch.Tensor, passage_reps: torch.Tensor, n: int, in_batch_negatives: bool) -> torch.Tensor:
    """Student log-distribution from [b, d] queries and [b·n, d] passages (question i owns rows i·n..i·n+n-1)."""
    scores = query_reps @ passage_reps.T
    if in_batch_negatives:
        return F.log_softmax(scores, dim=-1)
    b = query_reps.shape[0]
    own = scores.view(b, b, n)[torch.arange(b), torch.arange(b)]
    return F.log_softmax(own, dim=-1)


def distillation_loss(query_reps: torch.Tensor, passage_reps: torch.Tensor, teacher_scores: torch.Tensor,
                      temperature: float, in_batch_negatives: bool) -> torch.Tensor:
    """KL(teacher ‖ student), averaged over the questions of the batch."""
    n = teacher_scores.shape[1]
    # fp32 whatever the encoders computed in: dot products of unnormalised 768-d representations
    # reach the hundreds, where bf16's 8-bit mantissa is off by ~1 (a factor e in the softmax).
    # For fp32 inputs `.float()` is the tensor itself.
    student = student_log_probs(query_reps.float(), passage_reps.float(), n, in_batch_negatives)
    teacher = teacher_log_probs(teacher_scores, temperature, in_batch_negatives)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True)


def strip_question_mark(questions: Sequence[Question]) -> list[Question]:
    """One trailing ASCII "?" removed, as the official `normalize_question` does to training questions
    (not "？" or "؟": the official code leaves those)."""
    return [replace(q, text=q.text[:-1]) if q.text.endswith("?") else q for q in questions]


@dataclass
class TrainingExample:
    question: Question
    passages: list[str]  # ids of the reranked top-k, best first
    scores: list[float]


def load_examples(questions: Sequence[Question], runs: Sequence[str | Path], top_k: int, n: int) -> list[TrainingExample]:
    reranked = {}
    for path in runs:
        reranked.update(read_trec_run(path))
    examples = []
    for q in questions:
        if q.id not in reranked:
            raise UMRError(f"training question {q.id} has no reranked passages in {', '.join(map(str, runs))}")
        ranked = reranked[q.id][:top_k]
        if len(ranked) < n:
            raise UMRError(f"question {q.id} has {len(ranked)} reranked passages, fewer than passages_per_question {n}")
        examples.append(TrainingExample(q, [d for d, _ in ranked], [s for _, s in ranked]))
    return examples


def split_validation(examples: Sequence[TrainingExample], count: int, seed: int
                     ) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(training, held-out) examples: `count` questions drawn with their own seeded generator
    (the training order's generator is untouched), both lists in the original order."""
    if count >= len(examples):
        raise UMRError(f"validation.questions {count} leaves no training questions ({len(examples)} in all)")
    held = set(random.Random(f"validation-{seed}").sample(range(len(examples)), count))
    return ([ex for i, ex in enumerate(examples) if i not in held],
            [ex for i, ex in enumerate(examples) if i in held])


class RankValidation:
    """The official trainer's unsupervised validation (DPR's `validate_average_rank` on a dev file cut
    from the reranked training data): each held-out question's positive is the teacher's top passage;
    the pool is every held-out question's top 1 + `hard_negatives` reranked passages; the score is the
    positive's rank in the question's ordering of the whole pool (0 = first), averaged. Lower is better.
    No answer or gold passage is read. Ties count in the positive's favour (DPR's sort breaks them
    arbitrarily)."""

    def __init__(self, examples: Sequence[TrainingExample], passages: dict[str, Passage], hard_negatives: int):
        self.questions = [ex.question.text for ex in examples]
        self.pool: list[Passage] = []
        self.positive: list[int] = []
        for ex in examples:
            self.positive.append(len(self.pool))
            self.pool.extend(passages[pid] for pid in ex.passages[: 1 + hard_negatives])

    def average_rank(self, encoder: DualEncoder, precision: Precision, batch_size: int = 64) -> float:
        pad = encoder.tokenizer.pad_token_id
        q = encode_ids(encoder.query_model, encoder.tokenize_questions(self.questions), pad, batch_size,
                       desc="validate questions", progress=False, precision=precision)
        p = encode_ids(encoder.passage_model, encoder.tokenize_passages(self.pool), pad, batch_size,
                       desc="validate passages", progress=False, precision=precision)
        scores = torch.from_numpy(q) @ torch.from_numpy(p).T  # [questions, pool], fp32
        positive = scores[torch.arange(len(self.positive)), torch.tensor(self.positive)]
        ranks = (scores > positive[:, None]).sum(dim=1)
        return ranks.double().mean().item()


@contextmanager
def _rng_replay(state: dict | None) -> Iterator[dict]:
    """Capture (state None) or restore the RNG state so a re-forward draws the same dropout."""
    if state is None:
        state = {"cpu": torch.random.get_rng_state(),
                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    else:
        torch.random.set_rng_state(state["cpu"])
        if state["cuda"] is not None:
            torch.cuda.set_rng_state_all(state["cuda"])
    yield state


class Distiller:
    """One distillation run: data order, optimiser and schedule are all seeded.

    `precision` (`umr.precision`; `auto` is fp32 on the CPU) is the forward passes'
    autocast precision; the weights and the optimizer's state stay fp32.
    """

    def __init__(self, encoder: DualEncoder, examples: list[TrainingExample], passages: dict[str, Passage],
                 settings: DistillSettings, device: torch.device, precision: str | Precision = "auto",
                 validation: RankValidation | None = None):
        self.encoder, self.examples, self.passages, self.s, self.device = encoder, examples, passages, settings, device
        if (validation is None) != (settings.keep == "final"):
            raise UMRError(f"keep {settings.keep!r} {'needs' if validation is None else 'takes no'} held-out validation")
        # keep best_val_rank: the validation, each epoch's average rank, the best epoch and its weights (CPU).
        self.validation, self.val_ranks, self.best = validation, [], None
        self.precision = resolve_precision(precision, device)
        # fp16: dynamic loss scale; bf16/fp32: a disabled scaler whose calls do nothing (same code path).
        self.scaler = self.precision.grad_scaler()
        if len(examples) < settings.batch_size:
            raise UMRError(f"{len(examples)} training questions, fewer than batch_size {settings.batch_size}")
        self.steps_per_epoch = len(examples) // settings.batch_size  # the last partial batch is dropped
        self.total_steps = self.steps_per_epoch * settings.epochs
        params = list(encoder.query_model.parameters()) + list(encoder.passage_model.parameters())
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=settings.learning_rate, eps=1e-8, weight_decay=0.0)
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, min(settings.warmup_steps, self.total_steps),
                                                         self.total_steps)
        self.rng = random.Random(settings.seed)
        # Data cursor: epoch, that epoch's question order, batches of it already drawn.
        self.epoch, self.order, self.position = 0, None, 0
        self.step, self.losses = 0, []

    def batches(self) -> Iterator[tuple[list[str], list[Passage], torch.Tensor]]:
        """(question texts, b·n passages, [b, n] teacher scores) per step, epoch after epoch.

        Continues from the data cursor, which always describes the state after the
        last batch drawn, so a restored cursor and RNG give the batches that follow.
        """
        s = self.s
        while self.epoch < s.epochs:
            if self.order is None:
                order = list(range(len(self.examples)))
                self.rng.shuffle(order)
                self.order, self.position = order, 0
            while self.position < self.steps_per_epoch:
                step = self.position
                batch = [self.examples[i] for i in self.order[step * s.batch_size : (step + 1) * s.batch_size]]
                texts, passages, scores = [], [], []
                for ex in batch:
                    picked = self.rng.sample(range(len(ex.passages)), s.passages_per_question)
                    texts.append(ex.question.text)
                    passages.extend(self.passages[ex.passages[j]] for j in picked)
                    scores.append([ex.scores[j] for j in picked])
                teacher = torch.tensor(scores, dtype=torch.float32)
                self.position += 1
                yield texts, passages, (-teacher if s.negate_teacher else teacher)
            self.epoch, self.order, self.position = self.epoch + 1, None, 0

    def _tensors(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, mask = pad_batch(ids, self.encoder.tokenizer.pad_token_id)
        return input_ids.to(self.device), mask.to(self.device)

    def step_gradients(self, texts: list[str], passages: list[Passage], teacher: torch.Tensor) -> float:
        """Accumulate this step's gradients into the parameters; returns the loss."""
        s, enc = self.s, self.encoder
        q_ids, p_ids = enc.tokenize_questions(texts), enc.tokenize_passages(passages)
        teacher = teacher.to(self.device)
        if not s.grad_cache:
            with self.precision.autocast():
                q = embed(enc.query_model, *self._tensors(q_ids))
                p = embed(enc.passage_model, *self._tensors(p_ids))
            # fp32 loss outside autocast: `embed` returns fp32 representations, and autocast would
            # run the b × b·n similarity matmul in bf16/fp16 (scores of ~1e2 with 3 significant digits).
            loss = distillation_loss(q, p, teacher, s.temperature, s.in_batch_negatives)
            self.scaler.scale(self._grad_scaled(loss)).backward()
            return loss.item()
        return self._grad_cache_step(q_ids, p_ids, teacher)

    def _grad_scaled(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss whose gradients are `grad_scale` times the loss's (at 1: the loss itself, bit for bit)."""
        return loss if self.s.grad_scale == 1.0 else loss * self.s.grad_scale

    def validate_epoch(self) -> None:
        """keep best_val_rank: score this epoch's weights; the first best (lowest) rank is kept, as the
        official `validate_and_save` keeps the first of equal results."""
        enc = self.encoder
        rank = self.validation.average_rank(enc, self.precision)
        enc.query_model.train()
        enc.passage_model.train()
        self.val_ranks.append(rank)
        epoch = len(self.val_ranks)
        if self.best is None or rank < self.best["rank"]:
            self.best = {"epoch": epoch, "rank": rank, "query_model": _cpu_copy(enc.query_model),
                         "passage_model": _cpu_copy(enc.passage_model)}
        log.info("epoch %d: validation average rank %.3f (best: epoch %d, %.3f)", epoch, rank, self.best["epoch"],
                 self.best["rank"])

    def restore_best(self) -> None:
        """Load the best epoch's weights into the encoder (keep best_val_rank)."""
        self.encoder.query_model.load_state_dict(self.best["query_model"])
        self.encoder.passage_model.load_state_dict(self.best["passage_model"])

    def _grad_cache_step(self, q_ids: list[list[int]], p_ids: list[list[int]], teacher: torch.Tensor) -> float:
        """Gradient cache: representations without graph, loss gradient w.r.t. them, chunked re-forward.

        Both forwards of a chunk run under the same autocast, so the re-forward reproduces
        the cached representation it backpropagates through. The cached gradients come from
        the scaled loss (fp16), so the parameter gradients carry the scale exactly once, as
        in the full batch, and the trainer's `unscale_` removes it.
        """
        s, enc = self.s, self.encoder
        plan = [(enc.query_model, q_ids, s.query_chunk_size), (enc.passage_model, p_ids, s.passage_chunk_size)]
        reps, states = [], []
        for model, ids, size in plan:
            chunks, chunk_states = [], []
            for start in range(0, len(ids), size):
                with _rng_replay(None) as state, torch.no_grad(), self.precision.autocast():
                    chunks.append(embed(model, *self._tensors(ids[start : start + size])))
                chunk_states.append(state)
            reps.append(torch.cat(chunks).requires_grad_())
            states.append(chunk_states)
        loss = distillation_loss(reps[0], reps[1], teacher, s.temperature, s.in_batch_negatives)  # fp32 (see above)
        # The official code scales each chunk's surrogate instead: the same product, by linearity.
        self.scaler.scale(self._grad_scaled(loss)).backward()
        for (model, ids, size), rep, chunk_states in zip(plan, reps, states):
            for k, start in enumerate(range(0, len(ids), size)):
                with _rng_replay(chunk_states[k]), self.precision.autocast():
                    fresh = embed(model, *self._tensors(ids[start : start + size]))
                fresh.backward(gradient=rep.grad[start : start + size])
        return loss.item()

    def train(self, checkpoints: "Checkpoints | None" = None, checkpoint_every: int = 0) -> list[float]:
        """Train to the end (or, with `checkpoints`, from the newest checkpoint to the end).

        With `checkpoints`, the state is saved every `checkpoint_every` steps (0: never
        periodically) and on SIGTERM/SIGUSR1, which then stop training (`Interrupted`).
        """
        enc, s = self.encoder, self.s
        if checkpoints is not None:
            checkpoints.resume(self)
        enc.query_model.train()
        enc.passage_model.train()
        losses = self.losses
        bar = tqdm(total=self.total_steps, initial=self.step, desc="distill", unit="step", mininterval=10)
        # Signals stop training only where the state can be saved; otherwise they keep their default.
        with bar, (StopSignals() if checkpoints is not None else nullcontext(StopSignals(()))) as stop:
            for texts, passages, teacher in self.batches():
                loss = self.step_gradients(texts, passages, teacher)
                # fp16: divide the loss scale out of the gradients before clipping measures their norm;
                # the scaler's step then skips the update if any gradient is inf/NaN (and `update`
                # halves the scale). bf16/fp32: all three do nothing beyond `optimizer.step()`.
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.params, s.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                losses.append(loss)
                self.step = step = self.step + 1
                bar.update(1)
                if step % max(1, self.steps_per_epoch) == 0 or step == self.total_steps:
                    epoch_losses = losses[-self.steps_per_epoch:]
                    log.info("epoch %d/%d (step %d) mean loss %.4f", step // max(1, self.steps_per_epoch), s.epochs,
                             step, sum(epoch_losses) / len(epoch_losses))
                    if self.validation is not None:
                        self.validate_epoch()
                if checkpoints is None:
                    continue
                if step == self.total_steps:
                    break  # finished: a signal now is answered by saving the retriever, not a checkpoint
                saved = None
                if checkpoint_every and step % checkpoint_every == 0:
                    saved = checkpoints.save(self)
                if stop.received is not None:
                    saved = saved or checkpoints.save(self)
                    raise Interrupted(f"stopped by {signal_name(stop.received)} at step {step}/{self.total_steps}; "
                                      f"checkpoint {saved} saved: rerun the same command to resume", stop.received)
        return losses

    # -- checkpoint state -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Everything that determines the rest of training."""
        return {
            "step": self.step,
            "losses": list(self.losses),
            "query_model": self.encoder.query_model.state_dict(),
            "passage_model": self.encoder.passage_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),  # fp16's loss scale and growth tracker; {} otherwise
            "cursor": {"epoch": self.epoch, "order": self.order, "position": self.position},
            "validation": {"ranks": list(self.val_ranks), "best": self.best},  # keep best_val_rank
            "rng": {
                "data": self.rng.getstate(),
                "python": random.getstate(),
                "torch": torch.random.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.encoder.query_model.load_state_dict(state["query_model"])
        self.encoder.passage_model.load_state_dict(state["passage_model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        # Checkpoints from before mixed precision have no scaler state (they were fp32: nothing to restore).
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.losses = int(state["step"]), list(state["losses"])
        validation = state.get("validation") or {}
        self.val_ranks, self.best = list(validation.get("ranks", [])), validation.get("best")
        cursor = state["cursor"]
        self.epoch, self.order, self.position = cursor["epoch"], cursor["order"], cursor["position"]
        rng = state["rng"]
        self.rng.setstate(_as_tuple(rng["data"]))
        random.setstate(_as_tuple(rng["python"]))
        torch.random.set_rng_state(rng["torch"])
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        elif rng["cuda"] is not None:
            log.warning("checkpoint has CUDA RNG states but no GPU is visible: dropout on CPU will differ from "
                        "an uninterrupted GPU run")


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights copied to the CPU (kept while training moves on)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def signal_name(signum: int) -> str:
    import signal

    return signal.Signals(signum).name


def _as_tuple(value):
    """Python RNG state back from the checkpoint (lists, where pickling kept tuples anyway)."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


CHECKPOINT_FORMAT = 1
CHECKPOINT_KEYS = ("format", "fingerprint", "step", "losses", "query_model", "passage_model", "optimizer", "scheduler",
                   "cursor", "rng")


def checkpoint_dir_for(out_dir: str | Path) -> Path:
    """`<out>.checkpoints`: next to the declared output, never inside it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".checkpoints")


class Checkpoints:
    """The checkpoints of one distillation run in a directory (`step-<N>.pt`, newest two kept).

    `key` is the fingerprint of the computation (inputs, student, settings): a
    checkpoint with another fingerprint belongs to another run and is discarded.
    """

    KEEP = 2

    def __init__(self, directory: str | Path, key: str):
        self.dir, self.key = Path(directory), key

    def files(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted((p for p in self.dir.glob("step-*.pt") if p.stem[5:].isdigit()), key=lambda p: int(p.stem[5:]))

    def load(self, path: Path) -> dict[str, Any]:
        """A checkpoint's state (on the CPU); a truncated or corrupt file is a one-line error naming it."""
        try:
            # CPU: RNG states must stay CPU tensors; load_state_dict moves weights to the model's device.
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict) or any(k not in state for k in CHECKPOINT_KEYS):
                raise ValueError("missing entries")
            if state["format"] != CHECKPOINT_FORMAT:
                raise ValueError(f"format {state['format']}, expected {CHECKPOINT_FORMAT}")
        except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors ...
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UMRError(f"{path}: truncated or corrupt distillation checkpoint ({reason}); delete it to resume "
                           f"from the previous checkpoint, or delete {self.dir} to start over") from None
        return state

    def resume(self, distiller: "Distiller") -> None:
        """Load the newest checkpoint of this computation into `distiller`, if there is one."""
        files = self.files()
        if not files:
            return
        state = self.load(files[-1])
        if state["fingerprint"] != self.key:
            log.warning("%s holds checkpoints of a different run (inputs, student or settings changed); "
                        "discarding them and starting over", self.dir)
            shutil.rmtree(self.dir)
            return
        try:
            distiller.load_state(state)
        except (KeyError, ValueError, RuntimeError, TypeError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UMRError(f"{files[-1]}: checkpoint does not fit this model ({reason}); delete {self.dir} "
                           "to start over") from None
        log.info("resuming from %s: step %d of %d", files[-1], distiller.step, distiller.total_steps)

    def save(self, distiller: "Distiller") -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step-{distiller.step:08d}.pt"
        with atomic_file(path) as tmp:
            torch.save({"format": CHECKPOINT_FORMAT, "fingerprint": self.key, **distiller.state()}, tmp)
        for old in self.files()[: -self.KEEP]:
            old.unlink()
        log.info("checkpoint %s (step %d of %d)", path, distiller.step, distiller.total_steps)
        return path

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def run_fingerprint(student: str, examples: Sequence[TrainingExample], passages: dict[str, Passage],
                    settings: DistillSettings, top_k: int, device: torch.device,
                    precision: Precision | None = None) -> str:
    """What a checkpoint must match to be resumed: the student, the training data, the settings."""
    key = {
        "student": [str(student), path_identity(student)],
        "settings": asdict(settings), "top_k": top_k, "device": device.type,
        # Streamed, item by item: one JSON string of all passages is several GB for XOR-Full.
        "examples": fingerprint_items((ex.question.id, ex.question.text, ex.passages, [repr(x) for x in ex.scores])
                                      for ex in examples),
        "passages": fingerprint_items((passages[pid].id, passages[pid].title, passages[pid].text)
                                      for pid in sorted(passages)),
    }
    if precision is not None and precision.mixed:
        key["precision"] = precision.name  # fp32 keeps its earlier key: its checkpoints still resume
    return fingerprint(key)


def distill(student: str, questions_file: str | Path, runs: Sequence[str | Path], corpus: Corpus,
            settings: DistillSettings, top_k: int, out_dir: str | Path, languages: Sequence[str] | None = None,
            device: str = "auto", checkpoint_every: int = 0, checkpoint_dir: str | Path | None = None,
            precision: str = "auto") -> list[float]:
    """Train a retriever from `student` on reranked runs; writes a retriever directory.

    With `checkpoint_every` > 0 (or a `checkpoint_dir`), training checkpoints into
    `checkpoint_dir` (default `<out_dir>.checkpoints`), resumes from the newest
    checkpoint found there, stops cleanly on SIGTERM/SIGUSR1, and removes the
    directory once the retriever is saved. `precision`: see `umr.precision`.
    """
    seed_everything(settings.seed)
    questions = read_questions(questions_file, languages)
    missing = [lang for lang in dict.fromkeys(languages or ()) if not any(q.lang == lang for q in questions)]
    if missing:
        raise UMRError(f"{questions_file}: no training questions in language(s) {', '.join(missing)} "
                       f"(configured languages: {', '.join(languages)})")
    if settings.strip_question_mark:
        questions = strip_question_mark(questions)
    examples = load_examples(questions, runs, top_k, settings.passages_per_question)
    needed = sorted({d for ex in examples for d in ex.passages})
    passages = dict(zip(needed, corpus.get_many(needed)))
    validation = None
    if settings.keep == "best_val_rank":
        examples, held_out = split_validation(examples, settings.val_questions, settings.seed)
        validation = RankValidation(held_out, passages, settings.val_hard_negatives)
        log.info("keep best_val_rank: %d questions held out for validation (%d passages in the pool)",
                 len(held_out), len(validation.pool))
    encoder = DualEncoder.load(student, settings.max_length)
    dev = device_for(device)
    resolved = resolve_precision(precision, dev)
    optimise_for_training(encoder.query_model.to(dev))  # CPU fp32 only: oneDNN products (umr.fasttrain)
    optimise_for_training(encoder.passage_model.to(dev))
    log.info("distilling %d questions x %d passages (top-%d), %s", len(examples), settings.passages_per_question,
             top_k, json.dumps(asdict(settings)))
    checkpoints = None
    if checkpoint_every > 0 or checkpoint_dir is not None:
        checkpoints = Checkpoints(checkpoint_dir or checkpoint_dir_for(out_dir),
                                  run_fingerprint(student, examples, passages, settings, top_k, dev, resolved))
    distiller = Distiller(encoder, examples, passages, settings, dev, resolved, validation)
    losses = distiller.train(checkpoints, checkpoint_every)
    meta = asdict(settings) | {"student": student, "top_k": top_k, "precision": resolved.name}
    if validation is not None:
        distiller.restore_best()
        meta |= {"validation_average_rank": distiller.val_ranks, "kept_epoch": distiller.best["epoch"]}
        log.info("keeping epoch %d of %d (validation average rank %.3f)", distiller.best["epoch"], settings.epochs,
                 distiller.best["rank"])
    with atomic_dir(out_dir) as tmp:
        encoder.save(tmp)
        (tmp / "distill_settings.json").write_text(json.dumps(meta, indent=2) + "\n")
    if checkpoints is not None:
        checkpoints.remove()
    return losses


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.distill", description="Distil a reranker into a dense retriever.")
    p.add_argument("--student", required=True, help="retriever to start from (hub name or directory)")
    p.add_argument("--questions", required=True, help="training questions (XOR-TyDi JSONL; answers are never read)")
    p.add_argument("--languages", nargs="+", help="allowed question languages")
    p.add_argument("--reranked", nargs="+", required=True, help="reranked TREC runs covering the training questions")
    p.add_argument("--corpus", required=True)
    p.add_argument("--offsets", required=True)
    p.add_argument("--top-k", type=int, required=True, help="reranked passages per question to sample from")
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--passages-per-question", type=int, default=16)
    p.add_argument("--no-in-batch-negatives", dest="in_batch_negatives", action="store_false")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--learning-rate", type=float, default=2e-5)
    p.add_argument("--warmup-steps", type=int, default=1237)
    p.add_argument("--max-grad-norm", type=float, default=2.0)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--negate-teacher", action="store_true", help="control: reverse the teacher's preferences")
    p.add_argument("--grad-scale", type=float, default=1.0,
                   help="multiply the gradients by this before clipping (the official grad-cache step: 1/8)")
    p.add_argument("--strip-question-mark", action="store_true",
                   help="drop a trailing '?' from the training questions (the official normalize_question)")
    p.add_argument("--keep", choices=DistillSpec.KEEP, default="final",
                   help="final: the last weights; best_val_rank: the epoch with the best average rank of the "
                        "teacher's top passage on held-out training questions (the official trainer)")
    p.add_argument("--val-questions", type=int, default=1000, help="best_val_rank: training questions held out")
    p.add_argument("--val-hard-negatives", type=int, default=30,
                   help="best_val_rank: reranked passages after the top one in each held-out question's pool")
    p.add_argument("--grad-cache", action="store_true")
    p.add_argument("--query-chunk-size", type=int, default=16)
    p.add_argument("--passage-chunk-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="autocast precision of the forward passes over fp32 weights (umr.precision; auto: bf16 on "
                        "A100/H100, fp16 with a loss scale on older GPUs, fp32 on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=int(os.environ.get("UMR_CHECKPOINT_EVERY", 500)),
                   help="save the training state every N steps (0: only on SIGTERM/SIGUSR1); a rerun resumes from it")
    p.add_argument("--checkpoint-dir", help="where checkpoints live (default: <out>.checkpoints, removed when done)")
    p.add_argument("--out", required=True, help="output retriever directory")
    return p


def _main(args: argparse.Namespace) -> None:
    set_threads(args.threads)
    retain_freed_memory()
    settings = DistillSettings(
        temperature=args.temperature, batch_size=args.batch_size, passages_per_question=args.passages_per_question,
        in_batch_negatives=args.in_batch_negatives, epochs=args.epochs, learning_rate=args.learning_rate,
        warmup_steps=args.warmup_steps, max_grad_norm=args.max_grad_norm, max_length=args.max_length, seed=args.seed,
        negate_teacher=args.negate_teacher, grad_cache=args.grad_cache, query_chunk_size=args.query_chunk_size,
        passage_chunk_size=args.passage_chunk_size, grad_scale=args.grad_scale,
        strip_question_mark=args.strip_question_mark, keep=args.keep,
        val_questions=args.val_questions if args.keep == "best_val_rank" else 0,
        val_hard_negatives=args.val_hard_negatives if args.keep == "best_val_rank" else 30)
    if args.grad_scale <= 0:
        raise UMRError(f"--grad-scale: must be positive, got {args.grad_scale}")
    if args.keep == "best_val_rank" and args.val_questions < 1:
        raise UMRError(f"--val-questions: keep best_val_rank needs at least one, got {args.val_questions}")
    if args.checkpoint_every < 0:
        raise UMRError(f"--checkpoint-every: must be 0 (off) or a number of steps, got {args.checkpoint_every}")
    checkpoint_dir = args.checkpoint_dir or checkpoint_dir_for(args.out)
    with Corpus(args.corpus, args.offsets, source=args.reranked) as corpus:
        distill(args.student, args.questions, args.reranked, corpus, settings, args.top_k, args.out, args.languages,
                args.device, checkpoint_every=args.checkpoint_every, checkpoint_dir=checkpoint_dir,
                precision=args.precision)
    log.info("saved %s", args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
