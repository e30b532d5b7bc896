"""Item 3: distillation steps (umr.distill.Distiller) with and without the gradient cache.

Each configuration runs in a fresh process (`--worker`) at the paper's batch shape,
16 questions x 16 passages (max length 256, question chunks 16, passage chunks 8):
1. one step with dropout off, whose gradients are saved: the two processes see the
   same weights and the same batch, so grad cache and full batch must agree;
2. `STEPS` training steps as Distiller.train does them (dropout on, clip, AdamW,
   schedule), timed one by one;
3. after the memory figure is taken: step 1 again in float64 from the initial weights.
Float64 shows whether the method is exact (grad cache = full batch to ~1e-12); in
float32 a gradient summed over all 256 x ~90 token positions carries float32
rounding of order 1e-4 in the full-batch computation itself, so there the check is
that the grad cache is as close to the float64 gradient as the full batch is.
Peak memory (bench.common.PeakMemory): the kernel's RSS high-water mark (VmHWM, what
ru_maxrss reports), reset just before the first step, minus the RSS at that moment
(after imports, model and data load): the memory the training steps add at their peak.
The reranked run is a stand-in (k random passages per question, descending scores):
only its shape matters for speed and memory.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import time
from typing import Any

BATCH, PASSAGES, TOP_K = 16, 16, 60
STEPS = 3


def worker(args: dict[str, Any]) -> dict[str, Any]:
    from bench.common import PeakMemory, quiet

    quiet()
    import torch

    from umr.corpus import Corpus
    from umr.distill import DistillSettings, Distiller, TrainingExample
    from umr.encode import DualEncoder
    from umr.records import read_questions

    questions = read_questions(args["questions"])
    rng = random.Random(0)
    with Corpus(args["corpus"]) as corpus:
        ids = [i.decode("utf-8") for i in corpus.ids]
        examples = [TrainingExample(q, [ids[r] for r in rng.sample(range(len(ids)), TOP_K)],
                                    [-0.05 * j for j in range(TOP_K)]) for q in questions]
        needed = sorted({d for ex in examples for d in ex.passages})
        passages = dict(zip(needed, corpus.get_many(needed)))
    settings = DistillSettings(batch_size=args["batch"], passages_per_question=args["passages"], epochs=1, learning_rate=2e-5,
                               warmup_steps=1, max_length=256, grad_cache=args["grad_cache"], query_chunk_size=16,
                               passage_chunk_size=8)
    encoder = DualEncoder.load(args["retriever"], settings.max_length)
    distiller = Distiller(encoder, examples, passages, settings, torch.device("cpu"))
    models = (encoder.query_model, encoder.passage_model)
    initial = [copy.deepcopy(model.state_dict()) for model in models]
    batches = distiller.batches()
    first = next(batches)
    memory = PeakMemory().start()

    def first_step_gradients(dtype) -> tuple[float, list]:
        """Gradients of the first batch with dropout off (parameters without a gradient: zeros)."""
        for model in models:
            model.train(False)
        texts, batch_passages, teacher = first
        loss = distiller.step_gradients(texts, batch_passages, teacher.to(dtype))
        grads = [torch.zeros_like(p, dtype=torch.float64) if p.grad is None else p.grad.detach().double().clone()
                 for p in distiller.params]
        distiller.optimizer.zero_grad(set_to_none=True)
        return loss, grads

    # 1. For the equality check.
    loss32, grads32 = first_step_gradients(torch.float32)

    # 2. Training steps, timed.
    for model in models:
        model.train()
    step_s = []
    for _ in range(args["steps"]):
        texts, batch_passages, teacher = next(batches)
        start = time.perf_counter()
        distiller.step_gradients(texts, batch_passages, teacher)
        torch.nn.utils.clip_grad_norm_(distiller.params, settings.max_grad_norm)
        distiller.optimizer.step()
        distiller.scheduler.step()
        distiller.optimizer.zero_grad(set_to_none=True)
        step_s.append(time.perf_counter() - start)
    peak = memory.result()

    # 3. Float64, from the initial weights (after the memory figure: float64 doubles the activations).
    for model, state in zip(models, initial):
        model.load_state_dict(state)
        model.double()
    loss64, grads64 = first_step_gradients(torch.float64)
    torch.save({"loss32": loss32, "grads32": grads32, "loss64": loss64, "grads64": grads64}, args["grads_out"])
    return {"grad_cache": args["grad_cache"], "step_s": step_s, "median_step_s": statistics.median(step_s),
            **peak}


def run(inputs, threads: int, batch: int = BATCH, passages: int = PASSAGES, steps: int = STEPS) -> dict[str, Any]:
    import torch

    from bench.common import run_worker

    out = {}
    for grad_cache in (False, True):
        grads = inputs.workdir / f"distill-grads-{'gc' if grad_cache else 'full'}.pt"
        out["grad_cache" if grad_cache else "full_batch"] = run_worker("bench.distill", {
            "grad_cache": grad_cache, "retriever": str(inputs.retriever), "questions": str(inputs.data["xor_retrieve_train"]),
            "corpus": str(inputs.data["corpus_xor_retrieve"]), "grads_out": str(grads), "batch": batch,
            "passages": passages, "steps": steps}, threads)
    full = torch.load(inputs.workdir / "distill-grads-full.pt")
    cached = torch.load(inputs.workdir / "distill-grads-gc.pt")

    def max_diff(a, b) -> float:
        return max(float((x - y).abs().max()) for x, y in zip(a, b))

    exact = full["grads64"]
    diff32, diff64 = max_diff(full["grads32"], cached["grads32"]), max_diff(full["grads64"], cached["grads64"])
    full32_error, cached32_error = max_diff(full["grads32"], exact), max_diff(cached["grads32"], exact)
    scale = max(float(f.abs().max()) for f in exact)
    # Exact method (float64 to 1e-5, in practice ~1e-12), and in float32 as accurate as the full batch.
    equal = diff64 <= 1e-5 and cached32_error <= 2 * full32_error + 1e-5
    full_s, gc_s = out["full_batch"]["median_step_s"], out["grad_cache"]["median_step_s"]
    return {
        "shape": f"{batch} questions x {passages} passages", "steps": steps, **out,
        "full_steps_per_s": 1 / full_s, "grad_cache_steps_per_s": 1 / gc_s, "grad_cache_speed_ratio": full_s / gc_s,
        "memory_ratio": out["full_batch"]["added_mb"] / max(out["grad_cache"]["added_mb"], 1e-9),
        "grad_max_abs_diff_fp32": diff32, "grad_max_abs_diff_fp64": diff64, "grad_max_abs": scale,
        "full_batch_fp32_error": full32_error, "grad_cache_fp32_error": cached32_error,
        "loss_diff_fp32": abs(full["loss32"] - cached["loss32"]), "loss_diff_fp64": abs(full["loss64"] - cached["loss64"]),
        "grads_equal": equal,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--worker", required=True, help="JSON arguments (internal)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    from bench.common import set_threads

    set_threads(args.threads)
    print(json.dumps(worker(json.loads(args.worker))))


if __name__ == "__main__":
    main()
