"""Item 5: the DAG level. `python -m bench.dag [--configfile CONFIG]`.

In a fresh temporary work directory: runs the whole DAG of CONFIG (default: the
repo's config.yaml, about half an hour on two cores) and prints its wall
time; then adds one teacher-temperature (τ) variant to the ablation grid and prints
(a) the jobs `snakemake -n` schedules for it, which must be only that variant's own
distill / encode / index / retrieve / evaluate jobs plus the tables, plots and
metrics that collect it (no rerank: the variant shares its parent's reranking), and
(b) the wall time to run them.

The variant is added with a second config file layered over CONFIG
(`--configfile CONFIG tau.yaml`, merged key by key), not `--config`: Snakemake
parses a `--config` value such as `ablations={temperature: [...]}` with YAML's base
loader, which keeps every number a string, and the config schema rejects strings.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Rules a new distillation variant may schedule: its own retriever's jobs and the reports that collect it.
VARIANT_RULES = {"distill", "encode_corpus", "build_index", "retrieve", "evaluate", "metrics", "all"}
VARIANT_RULE_PREFIXES = ("table_", "plot_")
# Rules whose outputs must all lie under the variant's own lineage node.
OWN_RULES = {"distill", "encode_corpus", "build_index", "retrieve", "evaluate"}


def snakemake(workdir: Path, configfiles: list[Path], *extra: str, cores: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", *map(str, configfiles), "--cores", str(cores), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def scheduled_jobs(dry_run_output: str) -> list[tuple[str, list[str]]]:
    """(rule, outputs) of every job in `snakemake -n` output."""
    jobs, rule = [], None
    for line in dry_run_output.splitlines():
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):$", line.strip())
        if head:
            rule = head.group(1)
            jobs.append((rule, []))
        elif rule and line.strip().startswith("output:"):
            jobs[-1][1].extend(o.strip() for o in line.split(":", 1)[1].split(","))
    return jobs


def new_temperature(config: dict) -> float:
    """A τ not yet in the grid (nor the default)."""
    taken = set(config["ablations"]["temperature"]) | {config["umr"]["distill"]["temperature"]}
    return next(t for t in (0.07, 0.5, 0.2, 0.03, 0.3) if t not in taken)


def run(configfile: str | Path, workdir: Path | None = None, cores: int = 2) -> dict[str, Any]:
    from umr.config import load_config
    from umr.lineage import _num

    configfile = Path(configfile).resolve()
    config = load_config(configfile)
    tau = new_temperature(config)
    own_tag = f"kd-t{_num(tau)}_"
    tmp = None
    if workdir is None:
        tmp = tempfile.mkdtemp(prefix="umr-dag-bench-")
        workdir = Path(tmp)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        # With --workdir on a finished run, the full run has nothing to do: its time is then not
        # measured here (None), only the variant's.
        dry = snakemake(workdir, [configfile], "-n", cores=cores)
        pending = scheduled_jobs(dry.stdout + dry.stderr)
        print(f"[dag] full run of {configfile} in {workdir}: {len(pending)} jobs ...", flush=True)
        start = time.perf_counter()
        done = snakemake(workdir, [configfile], "--quiet", "rules", cores=cores)
        full_s = time.perf_counter() - start if pending else None
        if done.returncode != 0:
            raise RuntimeError(f"full run failed:\n{done.stderr[-4000:]}")
        print(f"[dag] full run: {'already complete in --workdir, not timed' if full_s is None else f'{full_s:.0f} s'}",
              flush=True)

        extra = workdir / "tau-variant.yaml"
        extra.write_text(json.dumps({"ablations": {"temperature": list(config["ablations"]["temperature"]) + [tau]}}) + "\n")
        configs = [configfile, extra]
        dry = snakemake(workdir, configs, "-n", cores=cores)
        if dry.returncode != 0:
            raise RuntimeError(f"dry run failed:\n{dry.stderr[-4000:]}")
        jobs = scheduled_jobs(dry.stdout + dry.stderr)
        counts = dict(sorted(Counter(rule for rule, _ in jobs).items()))
        foreign = sorted({r for r in counts if r not in VARIANT_RULES and not r.startswith(VARIANT_RULE_PREFIXES)})
        not_own = [(rule, out) for rule, outs in jobs if rule in OWN_RULES for out in outs if own_tag not in out]
        ok = bool(jobs) and not foreign and not not_own and "rerank" not in counts
        print(f"[dag] τ = {tau} variant ({own_tag}...): snakemake -n schedules {len(jobs)} jobs:", flush=True)
        for rule, n in counts.items():
            print(f"    {rule:<24} {n}")
        for rule, outs in jobs:
            print(f"    {rule}: {', '.join(outs)}")
        if foreign:
            print(f"[dag] NOT only the variant's jobs: {', '.join(foreign)}")
        for rule, out in not_own:
            print(f"[dag] {rule} output outside the variant's lineage node: {out}")

        start = time.perf_counter()
        done = snakemake(workdir, configs, "--quiet", "rules", cores=cores)
        variant_s = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"variant run failed:\n{done.stderr[-4000:]}")
        print(f"[dag] variant run: {variant_s:.0f} s", flush=True)
        return {"configfile": str(configfile), "cores": cores, "full_run_s": full_s, "full_run_jobs": len(pending),
                "temperature": tau,
                "variant_jobs": counts, "variant_job_outputs": jobs, "variant_jobs_ok": ok,
                "foreign_rules": foreign, "outputs_outside_variant": not_own, "variant_run_s": variant_s}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary dir, removed)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    result = run(args.configfile, args.workdir, args.cores)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    full = "not timed (finished --workdir)" if result["full_run_s"] is None else f"{result['full_run_s']:.0f} s"
    print(f"full DAG {full}; τ={result['temperature']} variant {result['variant_run_s']:.0f} s; "
          f"only the variant's jobs: {result['variant_jobs_ok']}")
    return 0 if result["variant_jobs_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
