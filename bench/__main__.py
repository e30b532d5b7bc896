"""`python -m bench`: speed and memory of the pipeline's stages against naive references.

Runs items 1-4 (reranker, encoder, distillation, index/search; `--dag` adds item 5,
the DAG-level timing of bench/dag.py), prints a table, and writes
bench/results/latest.json and bench/RESULTS.md. Every figure is a ratio against a
naive reference measured in the same run on the same model and inputs, median of
`--runs` runs. Exits 1 if an equality check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
# tqdm reads its environment defaults when imported: no progress bars in benchmark output.
os.environ.setdefault("TQDM_DISABLE", "1")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3, help="timed runs per figure (median; at least 3)")
    p.add_argument("--threads", type=int, default=1, help="torch/BLAS/faiss threads (the pipeline's resources.threads)")
    p.add_argument("--workdir", type=Path, help="keep toy data, models and artefacts here (default: a temporary dir)")
    p.add_argument("--dag", action="store_true", help="also run item 5 (bench/dag.py: make toy then make ablations, ~25 min on 2 cores)")
    p.add_argument("--dag-configfile", default=str(HERE.parent / "config.yaml"), help="config of item 5")
    p.add_argument("--dag-workdir", type=Path, help="item 5 in this work directory (kept; a finished run there "
                                                    "times only the τ variant)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check that the suite runs (figures meaningless)")
    p.add_argument("--json", type=Path, default=HERE / "results" / "latest.json")
    p.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md")
    return p


def _x(value: float) -> str:
    return f"{value:.2f}x"


def rows(r: dict) -> list[list[str]]:
    """The summary table: measure, naive reference, optimised, ratio, target, check."""
    out = []
    rr = r["rerank"]
    for name, label in (("random", "random top-k"), ("dense", "dense top-k")):
        c = rr[name]
        met = "met" if c["speedup"] >= 3 else "NOT met"
        out.append([f"1. Reranker pairs/s, {rr['questions']} {rr['language']} questions x {label} {rr['top_k']} "
                    f"({c['pairs_per_passage']:.2f} pairs per distinct passage)",
                    f"{c['reference_pairs_per_s']:.1f} (UPR-style)", f"{c['optimised_pairs_per_s']:.1f}",
                    _x(c["speedup"]), f">= 3x: {met}", f"max abs score diff {c['max_abs_diff']:.1e} (<= 1e-4: "
                    f"{'ok' if c['equal'] else 'FAIL'})"])
    c = rr["cache"]
    out.append([f"1. rerank_run again with the score cache ({c['pairs']} pairs), s", f"{c['first_call_s']:.3f} (first call)",
                f"{c['second_call_s']:.4f}", _x(c["first_call_s"] / c["second_call_s"]), "-",
                f"second call = {100 * c['second_over_first']:.2f}% of the first; same ranking: "
                f"{'ok' if c['same_ranking'] else 'FAIL'}"])
    e = r["encode"]
    out.append([f"2. Encoder passages/s ({e['passages']} passages, {e['mean_tokens']:.0f} tokens on average)",
                f"{e['reference_pps']:.1f} (padded to 256)", f"{e['optimised_pps']:.1f}", _x(e["speedup"]),
                f">= 2x: {'met' if e['speedup'] >= 2 else 'NOT met'}",
                f"max abs embedding diff {e['max_abs_diff']:.1e} (<= 1e-5: {'ok' if e['equal'] else 'FAIL'})"])
    d = r["distill"]
    out.append([f"3. Distillation steps/s, {d['shape']} (without -> with grad cache)",
                f"{d['full_steps_per_s']:.3f} (full batch)", f"{d['grad_cache_steps_per_s']:.3f} (grad cache)",
                _x(d["grad_cache_speed_ratio"]), "-", "grad cache re-runs the forward: expected < 1x"])
    out.append([f"3. Distillation peak RSS added by a step, MB, {d['shape']}",
                f"{d['full_batch']['added_mb']:.0f} (full batch)", f"{d['grad_cache']['added_mb']:.0f} (grad cache)",
                _x(d["memory_ratio"]) + " less", "-",
                f"grad cache vs full batch, max abs grad diff: fp64 {d['grad_max_abs_diff_fp64']:.1e} (<= 1e-5), "
                f"fp32 {d['grad_max_abs_diff_fp32']:.1e} (fp32 rounding of the full batch itself: "
                f"{d['full_batch_fp32_error']:.1e}, of the grad cache {d['grad_cache_fp32_error']:.1e}; largest grad "
                f"{d['grad_max_abs']:.1e}): {'ok' if d['grads_equal'] else 'FAIL'}"])
    s = r["index"]["search"]
    out.append([f"4. Search queries/s, {s['queries']} queries, {s['passages']} passages, top-{s['top_k']}, "
                f"{s['shards']} shards", f"{s['numpy_qps']:.0f} (NumPy brute force)", f"{s['faiss_qps']:.0f} (faiss)",
                _x(s["speedup"]), "-", f"same top-k: {'ok' if s['same_top_k'] else 'FAIL'} "
                f"(rows identical: {s['identical_rows']}; {s['differing_positions']} differing positions, all ties "
                f"if their score gap {s['differing_max_score_gap']:.1e} <= float32 rounding "
                f"{s['float32_rounding']:.1e}; max abs score diff {s['max_abs_score_diff']:.1e})"])
    mem = r["index"]["memory"]
    out.append(["4. Peak RSS added by encode + index, MB, corpus of " + " / ".join(str(m["passages"]) for m in mem)
                + " passages (largest padded batch " + " / ".join(str(m["largest_batch_tokens"]) for m in mem)
                + " tokens)",
                "-", " / ".join(f"{m['added_mb']:.0f}" for m in mem),
                _x(mem[-1]["added_mb"] / max(mem[0]["added_mb"], 1e-9)) + f" for {mem[-1]['passages'] / mem[0]['passages']:.0f}x passages",
                "-", "absolute peaks " + " / ".join(f"{m['peak_mb']:.0f}" for m in mem) + " MB"])
    if "dag" in r:
        g = r["dag"]
        full = g["make_toy_s"]
        out.append(["5. Toy DAG wall time, s (make toy -> one extra τ variant)",
                    "(finished run in --dag-workdir: not timed)" if full is None else f"{full:.0f}",
                    f"{g['variant_run_s']:.0f}", "-" if full is None else _x(full / g["variant_run_s"]), "-",
                    f"variant jobs only its own: {'ok' if g['variant_jobs_ok'] else 'FAIL'} "
                    f"({', '.join(f'{k} {v}' for k, v in g['variant_jobs'].items())})"])
    return out


def markdown_table(table: list[list[str]]) -> str:
    header = ["Measure", "Naive reference", "Optimised", "Ratio", "Target", "Check"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in table]
    return "\n".join(lines)


def checks_pass(r: dict) -> bool:
    ok = (r["rerank"]["random"]["equal"] and r["rerank"]["dense"]["equal"] and r["rerank"]["cache"]["same_ranking"]
          and r["encode"]["equal"] and r["distill"]["grads_equal"] and r["index"]["search"]["same_top_k"])
    return ok and r.get("dag", {}).get("variant_jobs_ok", True)


NOTES = """\
How each figure is measured (bench/*.py docstrings have the details):
- Ratios are naive reference time / optimised time (for memory: reference MB / optimised MB), each the median of
  {runs} runs; reference and optimised runs alternate, so changes in machine load hit both alike.
- 1. Reference: UPR-style, one question at a time, its {k} passages in one batch padded to that batch's longest,
  the stock Hugging Face model in fp32, mean log-likelihood of the label tokens, same template and truncation.
  Optimised: umr.rerank.Reranker.score with the pipeline's settings (fp32 on CPU, batch_tokens {bt}). Tiny mT5
  (d_model 128, 2+2 layers, vocab 8000, 3 training steps), toy XOR-Full corpus (default ToySizes, ~70-word passages),
  {n} {lang} training questions (a rerank job is one language). `random top-k`: {k} random passages per question;
  `dense top-k`: the top-{k} of the bench's tiny retriever (item 4's indexes). The optimised reranker encodes a
  passage once for all questions of the job that retrieved it, so its gain grows with the pairs per distinct passage.
  The score cache row: rerank_run on the dense top-k, then again with the first call's scores as `--cache`.
- 2. Reference: the official code's padding of every passage to 256 tokens, input order, batch 128, masked mean
  pooling; optimised: tokenize_passages + encode_ids (length-sorted, dynamic padding), same model and batch size.
  Tiny BERT (hidden 128, 2 layers, vocab 8000, 3 training steps), passages of the toy XOR-Retrieve corpus.
- Peak memory (items 3 and 4, bench.common.PeakMemory): the kernel's RSS high-water mark (VmHWM, which is what
  getrusage's ru_maxrss reports), reset through /proc/self/clear_refs just before the measured work, minus the RSS
  at that moment; so a higher peak during model loading cannot hide the work's own peak.
- 3. Each configuration in a fresh process; memory from just before the first step (after model and data load). Gradient difference: the first batch with dropout off in both processes,
  in float32 (as trained) and float64. Float64 agreement shows the method is exact; in float32 a gradient summed
  over every token position of the batch (position / token-type embeddings) carries float32 rounding of ~1e-4 in
  the full-batch computation itself, so 1e-5 is checked in float64, and in float32 the check is that the grad
  cache is as close to the float64 gradient as the full batch is (tests/test_grad_cache_equality.py does the same).
- 4. Memory: a fresh process per corpus size (nested random samples of the toy XOR-Full corpus, 10x apart),
  encode_corpus_shard for {shards} shards (embeddings streamed to .npy) then build_index on the memory-mapped
  shards; memory from after model load. The activations of a batch grow with its padded size (up to 128 rows x
  256 tokens): a small corpus has fewer and shorter passages to fill its largest batch. Once that batch is full,
  only the tokenized chunk (at most 50,000 passages, umr.encode) grows with the corpus. Search: search_shards over the shard
  indexes (read from disk each call, as umr.retrieve does) vs all scores + a full stable sort in NumPy.
"""


def write_markdown(path: Path, r: dict, table: list[list[str]]) -> None:
    m = r["machine"]
    rr = r["rerank"]
    text = [
        "# Benchmark results", "",
        f"Command: `{r['command']}` (run {r['started']}, {r['duration_s']:.0f} s).", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['threads']} thread(s) for torch/BLAS/faiss; "
        f"Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, faiss {m['faiss']}, "
        f"numpy {m['numpy']}. Load average at start {m['load_average_at_start'][0]:.1f}, at end "
        f"{m['load_average_at_end'][0]:.1f}"
        + (" (other jobs shared the machine)." if max(m["load_average_at_start"][0], m["load_average_at_end"][0])
           > m["threads"] + 0.5 else " (nothing else running).") + " A 1-minute load average includes the bench's "
        "own processes.", "",
        *(["**Quick run (`--quick`): reduced sizes, to check that the suite runs; the figures mean nothing.**", ""]
          if r.get("quick") else []),
        markdown_table(table), "",
        NOTES.format(runs=r["runs"], k=rr["top_k"], bt=rr["batch_tokens"], n=rr["questions"], lang=rr["language"],
                     shards=r["index"]["memory"][0].get("shards", 2)),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(text), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 3:
        raise SystemExit("--runs: at least 3 (figures are medians of >= 3 runs)")
    from bench.common import set_threads

    set_threads(args.threads)  # before anything imports numpy/torch's thread pools
    from bench import distill, encode, index, rerank
    from bench.common import machine, prepare, quiet

    quiet()
    started = time.time()
    command = "python -m bench" + ("" if argv is None and len(sys.argv) == 1 else " " + shlex.join(sys.argv[1:] if argv is None else argv))
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="umr-bench-")
        workdir = Path(tmp)
    try:
        results: dict = {"command": command, "runs": args.runs, "quick": args.quick,
                         "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "machine": machine(args.threads)}
        print(f"[bench] preparing toy data and tiny models in {workdir}", flush=True)
        inputs = prepare(workdir)
        # Item 4 first: item 1's dense top-k comes from its shard indexes.
        print("[bench] 4. index and search", flush=True)
        results["index"] = index.run(inputs, args.runs, args.threads, **({"max_passages": 400} if args.quick else {}))
        print("[bench] 2. encoder", flush=True)
        results["encode"] = encode.run(inputs, args.runs, **({"n_passages": 64} if args.quick else {}))
        print("[bench] 1. reranker", flush=True)
        results["rerank"] = rerank.run(inputs, args.runs, results["index"]["index_paths"], results["index"]["index_corpus"],
                                       **({"n_questions": 2, "top_k": 20} if args.quick else {}))
        print("[bench] 3. distillation", flush=True)
        results["distill"] = distill.run(inputs, args.threads, **({"batch": 4, "passages": 4} if args.quick else {}))
        if args.dag:
            from bench import dag

            print("[bench] 5. DAG", flush=True)
            results["dag"] = dag.run(args.dag_configfile, args.dag_workdir)
        results["machine"]["load_average_at_end"] = list(os.getloadavg())
        results["duration_s"] = time.time() - started
        table = rows(results)
        results["table"] = table
        results["checks_pass"] = checks_pass(results)
        print()
        print(markdown_table(table))
        print(f"\nall equality checks pass: {results['checks_pass']}; {results['duration_s']:.0f} s")
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_markdown(args.markdown, results, table)
        print(f"wrote {args.json} and {args.markdown}")
        return 0 if results["checks_pass"] else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
