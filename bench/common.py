"""Shared pieces of the benchmarks: the toy inputs and tiny models, timing, memory, machine.

Every figure of the suite is a ratio against a naive reference timed in the same
run, on the same model and inputs. Reference and optimised code are timed
alternately (ref, opt, ref, opt, ...) so that a change in machine load during the
run (other jobs on a shared machine) hits both about equally; each figure is the
median of the runs.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]

# Tiny models of the default toy's shape (umr/resources/config.schema.yaml `toy_models`),
# trained a few steps only: weight quality does not change speed or memory.
LM_SIZE = dict(vocab_size=8000, d_model=128, layers=2, heads=4, d_ff=512, steps=3, batch_size=8, lr=1e-3, seed=1)
RETRIEVER_SIZE = dict(vocab_size=8000, hidden=128, layers=2, heads=2, intermediate=512, steps=3, batch_size=8,
                      lr=5e-4, temperature=0.05, seed=1)


def set_threads(threads: int) -> None:
    """Cap every thread pool (OpenMP, BLAS, torch, faiss) to `threads`; call before importing numpy/torch."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:  # pragma: no cover
        pass


def quiet() -> None:
    """No progress bars or per-step logs from the package and transformers in benchmark output."""
    import logging

    os.environ.setdefault("TQDM_DISABLE", "1")
    logging.getLogger("umr").setLevel(logging.WARNING)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


@dataclass
class Inputs:
    """The default toy benchmark and the two tiny models, built once per benchmark run."""

    workdir: Path
    data: dict[str, Path]
    lm: Path
    retriever: Path


def prepare(workdir: Path) -> Inputs:
    """Generate the default toy benchmark (umr.toy ToySizes(): passages of ~70 words) and the tiny models."""
    from umr import models, toy

    workdir.mkdir(parents=True, exist_ok=True)
    data = toy.data_files(workdir / "data")
    if not all(p.exists() for p in data.values()):
        data = toy.generate(toy.ToySizes(), workdir / "data")
    texts = None
    lm, retriever = workdir / "models" / "lm", workdir / "models" / "retriever"
    if not (lm / "config.json").exists():
        texts = models.collection_texts([data["corpus_xor_retrieve"], data["corpus_xor_full"]])
        models.pretrain_lm(texts, lm, **LM_SIZE)
    if not (retriever / "config.json").exists():
        texts = texts or models.collection_texts([data["corpus_xor_retrieve"], data["corpus_xor_full"]])
        models.pretrain_retriever(texts, retriever, **RETRIEVER_SIZE)
    return Inputs(workdir, data, lm, retriever)


def alternate(reference: Callable[[], Any], optimised: Callable[[], Any], runs: int,
              warmup: tuple[Callable[[], Any], Callable[[], Any]] | None = None) -> dict[str, Any]:
    """Time `reference` and `optimised` alternately `runs` times each, after one untimed call each
    (of `warmup`'s smaller stand-ins when given: allocator, lazy imports and caches warm up alike).

    Returns the per-run seconds, their medians, and each function's last result.
    """
    for fn in warmup or (reference, optimised):
        fn()
    ref_out = opt_out = None
    ref_s, opt_s = [], []
    for _ in range(runs):
        start = time.perf_counter()
        ref_out = reference()
        ref_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        opt_out = optimised()
        opt_s.append(time.perf_counter() - start)
    return {"reference_s": ref_s, "optimised_s": opt_s, "reference_median_s": statistics.median(ref_s),
            "optimised_median_s": statistics.median(opt_s), "reference_result": ref_out, "optimised_result": opt_out}


def median_time(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Median seconds of `runs` calls of `fn` (no warm-up), all times, and the last result."""
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover
        pass
    return None


class PeakMemory:
    """Peak resident memory added by a block of work, in MB.

    `start()` records the current RSS and resets the kernel's RSS high-water mark
    (VmHWM, what ru_maxrss reports) by writing 5 to /proc/self/clear_refs, so that a
    peak reached earlier (model loading) does not hide the work's own peak;
    `added()` is VmHWM - that RSS. Where the reset is not allowed, it falls back to
    ru_maxrss minus ru_maxrss at `start()` (exact only if the work peaks higher).
    """

    def start(self) -> "PeakMemory":
        self.rss = _status_mb("VmRSS")
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.method = "VmHWM reset via /proc/self/clear_refs, minus VmRSS at the start"
        except OSError:
            self.rss, self.method = None, "ru_maxrss minus ru_maxrss at the start"
        self.baseline = self.rss if self.rss is not None else self._maxrss()
        return self

    @staticmethod
    def _maxrss() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def peak(self) -> float:
        hwm = _status_mb("VmHWM") if self.rss is not None else None
        return hwm if hwm is not None else self._maxrss()

    def result(self) -> dict[str, Any]:
        peak = self.peak()
        return {"baseline_mb": self.baseline, "peak_mb": peak, "added_mb": peak - self.baseline,
                "memory_method": self.method}


def run_worker(module: str, args: dict[str, Any], threads: int, timeout: int = 900) -> dict[str, Any]:
    """Run `python -m <module> --worker '<json args>'` in a fresh process; its last stdout line is JSON."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-m", module, "--worker", json.dumps(args), "--threads", str(threads)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{module} worker failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine(threads: int) -> dict[str, Any]:
    """What the figures were measured on."""
    import faiss
    import numpy
    import torch
    import transformers

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:  # pragma: no cover
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
        "torch": torch.__version__, "transformers": transformers.__version__, "faiss": faiss.__version__,
        "numpy": numpy.__version__, "platform": platform.platform(),
        "load_average_at_start": list(os.getloadavg()),
    }
