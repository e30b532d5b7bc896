"""`python -m bench.train`: training steps of the toy's models, stock kernels vs `umr.fasttrain`.

Two models at the toy's sizes (config.yaml's `toy_models` defaults and `umr.distill`):
- the reranker LM's pre-training step (`umr.models.pretrain_lm`): mT5 architecture, d_model 128,
  2 + 2 layers, d_ff 512, vocabulary 8000, batch 32 of 128 + 1 input and 48 + 1 target tokens,
  dropout 0.1, label smoothing 0.1, AdamW;
- a distillation step (`umr.distill`, without grad cache): two BERT encoders (hidden 128, 2 layers,
  intermediate 512), 8 questions of 16 tokens and 8 x 8 passages of 150 tokens, the in-batch KL loss.

Each configuration runs in a fresh process (`retain_freed_memory` is per process): `stock` is the
code before umr.fasttrain (nn.Linear through MKL, glibc's default malloc), `optimised` is what the
pipeline runs. Reported: seconds per step, median of `--runs` processes (alternating stock and
optimised, so load changes hit both), each timing `--steps` steps after 3 warm-up steps; and the
largest gradient difference of the first step (dropout off), which is fp32 rounding only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _lm():
    import torch
    from transformers import MT5Config, MT5ForConditionalGeneration

    config = MT5Config(vocab_size=8000, d_model=128, d_kv=32, d_ff=512, num_layers=2, num_decoder_layers=2,
                       num_heads=4, feed_forward_proj="gated-gelu", dropout_rate=0.1, tie_word_embeddings=False,
                       decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    model = MT5ForConditionalGeneration(config)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(2, 8000, (32, 129), generator=g), torch.randint(2, 8000, (32, 49), generator=g)

    def loss():
        import torch.nn.functional as F

        logits = model(input_ids=x, attention_mask=torch.ones_like(x), labels=y).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), label_smoothing=0.1)

    return [model], loss


def _distill():
    import torch
    from transformers import BertConfig, BertModel

    from umr.distill import distillation_loss
    from umr.encode import embed

    config = BertConfig(vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=512, max_position_embeddings=256)
    torch.manual_seed(0)
    query, passage = BertModel(config), BertModel(config)
    g = torch.Generator().manual_seed(0)
    q, p = torch.randint(5, 8000, (8, 16), generator=g), torch.randint(5, 8000, (64, 150), generator=g)
    teacher = torch.randn(8, 8, generator=g)

    def loss():
        return distillation_loss(embed(query, q, torch.ones_like(q)), embed(passage, p, torch.ones_like(p)),
                                 teacher, 0.1, True)

    return [query, passage], loss


def _child(task: str, mode: str, steps: int) -> dict:
    import torch

    from umr.fasttrain import optimise_for_training, retain_freed_memory

    torch.set_num_threads(1)
    torch.manual_seed(0)
    optimised = mode == "optimised"
    if optimised:
        retain_freed_memory()
    models, loss = {"lm": _lm, "distill": _distill}[task]()
    if optimised:
        for model in models:
            optimise_for_training(model)
    params = [p for m in models for p in m.parameters()]
    for m in models:
        m.eval()  # the gradient check: no dropout
    loss().backward()
    first_grads = [p.grad.detach().clone() if p.grad is not None else None for p in params]
    for m in models:
        m.train()
    optimizer = torch.optim.AdamW(params, lr=1e-4)

    def step():
        loss().backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    grads = torch.cat([g.flatten() for g in first_grads if g is not None])
    return {"s_per_step": seconds, "first_grads": grads.tolist()[:: max(1, grads.numel() // 20000)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--child", nargs=2, metavar=("TASK", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child, args.steps)))
        return 0
    result = {}
    for task in ("lm", "distill"):
        times = {"stock": [], "optimised": []}
        grads = {}
        for _ in range(args.runs):
            for mode in ("stock", "optimised"):
                out = subprocess.run([sys.executable, "-m", "bench.train", "--steps", str(args.steps), "--child",
                                      task, mode], check=True, capture_output=True, text=True)
                child = json.loads(out.stdout.strip().splitlines()[-1])
                times[mode].append(child["s_per_step"])
                grads[mode] = child["first_grads"]
        gap = max(abs(a - b) for a, b in zip(grads["stock"], grads["optimised"]))
        largest = max(abs(a) for a in grads["stock"])
        stock, fast = statistics.median(times["stock"]), statistics.median(times["optimised"])
        result[task] = {"stock_s_per_step": stock, "optimised_s_per_step": fast, "speedup": stock / fast,
                        "max_abs_grad_diff": gap, "max_abs_grad": largest, "runs": args.runs, "steps": args.steps}
        print(f"{task:8s} stock {stock:.3f} s/step, optimised {fast:.3f} s/step: {stock / fast:.2f}x "
              f"(first-step gradients: max abs diff {gap:.1e}, largest gradient {largest:.1e})", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
