"""The DAG level: what a newcomer's first run costs. `python -m bench.dag [--fresh-clone] [--configfile CONFIG]`.

In a fresh work directory (default: a temporary one):
1. `make toy`: Snakemake's default target `all` (the method and its baselines) of CONFIG
   (default: the repo's config.yaml), timed; with --fresh-clone, in a `git clone` of this
   repository's HEAD, with the set-up (`make setup`: the virtual environment) timed too, as a
   new user runs it;
2. `make ablations`: the target `ablations` (the grids) after it, timed;
3. one teacher-temperature (τ) variant added to the grid: the jobs `snakemake -n ablations`
   schedules for it must be only that variant's own distill / encode / index / retrieve /
   evaluate jobs plus the tables, plots and metrics that collect it (no rerank: the variant
   shares its parent's reranking), and the wall time to run them.

Jobs per target come from `snakemake -n` before each step (not timed). The variant is added with
a second config file layered over CONFIG (`--configfile CONFIG tau.yaml`, merged key by key), not
`--config`: Snakemake parses a `--config` value such as `ablations={temperature: [...]}` with
YAML's base loader, which keeps every number a string, and the config schema rejects strings.
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
VARIANT_RULES = {"distill", "encode_corpus", "build_index", "retrieve", "evaluate", "metrics_ablations", "ablations"}
VARIANT_RULE_PREFIXES = ("table_", "plot_")
# Rules whose outputs must all lie under the variant's own lineage node.
OWN_RULES = {"distill", "encode_corpus", "build_index", "retrieve", "evaluate"}


def snakemake(repo: Path, workdir: Path, configfiles: list[Path], *extra: str, cores: int = 2) -> subprocess.CompletedProcess:
    python = repo / ".venv" / "bin" / "python" if (repo / ".venv").is_dir() else Path(sys.executable)
    cmd = [str(python), "-m", "snakemake", *extra, "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
           "--configfile", *map(str, configfiles), "--cores", str(cores)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def timed(what: str, fn) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    print(f"[dag] {what}: {seconds:.0f} s", flush=True)
    return seconds, out


def checked(proc: subprocess.CompletedProcess, what: str) -> subprocess.CompletedProcess:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    return proc


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


def run(configfile: str | Path, workdir: Path | None = None, cores: int = 2, fresh_clone: bool = False) -> dict[str, Any]:
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
        repo, setup_s = REPO, None
        if fresh_clone:
            repo = workdir / "clone"
            checked(subprocess.run(["git", "clone", "--quiet", str(REPO), str(repo)], capture_output=True, text=True),
                    "git clone")
            setup_s, done = timed("make setup (fresh clone)", lambda: subprocess.run(
                ["make", "setup"], cwd=repo, capture_output=True, text=True))
            checked(done, "make setup")
            configfile = repo / configfile.relative_to(REPO) if configfile.is_relative_to(REPO) else configfile
        rundir = repo if fresh_clone else workdir

        def step(target: str, configs: list[Path]) -> tuple[dict[str, int], float | None]:
            dry = checked(snakemake(repo, rundir, configs, target, "-n", cores=cores), f"snakemake -n {target}")
            jobs = Counter(rule for rule, _ in scheduled_jobs(dry.stdout + dry.stderr))
            print(f"[dag] {target}: {sum(jobs.values())} jobs", flush=True)
            if not jobs:
                return {}, None  # a finished --workdir: nothing to time
            seconds, done = timed(f"snakemake {target}", lambda: snakemake(repo, rundir, configs, target, "--quiet",
                                                                           "rules", cores=cores))
            checked(done, f"snakemake {target}")
            return dict(sorted(jobs.items())), seconds

        toy_jobs, toy_s = step("all", [configfile])
        ablation_jobs, ablations_s = step("ablations", [configfile])

        extra = workdir / "tau-variant.yaml"
        extra.write_text(json.dumps({"ablations": {"temperature": list(config["ablations"]["temperature"]) + [tau]}}) + "\n")
        configs = [configfile, extra]
        dry = checked(snakemake(repo, rundir, configs, "ablations", "-n", cores=cores), "variant dry run")
        jobs = scheduled_jobs(dry.stdout + dry.stderr)
        counts = dict(sorted(Counter(rule for rule, _ in jobs).items()))
        foreign = sorted({r for r in counts if r not in VARIANT_RULES and not r.startswith(VARIANT_RULE_PREFIXES)})
        not_own = [(rule, out) for rule, outs in jobs if rule in OWN_RULES for out in outs if own_tag not in out]
        ok = bool(jobs) and not foreign and not not_own and "rerank" not in counts
        print(f"[dag] τ = {tau} variant ({own_tag}...): snakemake -n ablations schedules {len(jobs)} jobs:", flush=True)
        for rule, n in counts.items():
            print(f"    {rule:<24} {n}")
        if foreign:
            print(f"[dag] NOT only the variant's jobs: {', '.join(foreign)}")
        for rule, out in not_own:
            print(f"[dag] {rule} output outside the variant's lineage node: {out}")
        variant_s, done = timed("τ variant", lambda: snakemake(repo, rundir, configs, "ablations", "--quiet", "rules",
                                                              cores=cores))
        checked(done, "variant run")
        return {"configfile": str(configfile), "cores": cores, "fresh_clone": fresh_clone, "setup_s": setup_s,
                "make_toy_dag_s": toy_s, "make_toy_s": None if toy_s is None else toy_s + (setup_s or 0.0),
                "make_toy_jobs": toy_jobs, "make_ablations_s": ablations_s, "make_ablations_jobs": ablation_jobs,
                "temperature": tau, "variant_jobs": counts, "variant_job_outputs": jobs, "variant_jobs_ok": ok,
                "foreign_rules": foreign, "outputs_outside_variant": not_own, "variant_run_s": variant_s}
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dag", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", default=str(REPO / "config.yaml"))
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--fresh-clone", action="store_true", help="git clone HEAD into the work directory and time "
                        "`make setup` there too (a new user's first run)")
    parser.add_argument("--workdir", type=Path, help="keep the run here (default: a temporary dir, removed)")
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")
    args = parser.parse_args()
    result = run(args.configfile, args.workdir, args.cores, args.fresh_clone)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    def fmt(seconds):
        return "not timed (finished --workdir)" if seconds is None else f"{seconds:.0f} s ({seconds / 60:.1f} min)"

    setup = f" = set-up {result['setup_s']:.0f} s + DAG" if result["setup_s"] is not None else ""
    print(f"make toy {fmt(result['make_toy_s'])}{setup}, {sum(result['make_toy_jobs'].values())} jobs; "
          f"make ablations after it {fmt(result['make_ablations_s'])}, {sum(result['make_ablations_jobs'].values())} jobs; "
          f"τ={result['temperature']} variant {result['variant_run_s']:.0f} s; "
          f"only the variant's jobs: {result['variant_jobs_ok']}")
    return 0 if result["variant_jobs_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
