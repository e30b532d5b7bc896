"""The rehearsal of the paper run: config.paper.yaml, real formats, real code paths, on a CPU.

`make rehearsal` (= `python -m umr.rehearsal`) runs the paper's DAG the way a cluster user
does, `snakemake --profile slurm`, with only sources and sizes swapped (config.rehearsal.yaml):

1. sources: the toy benchmark's content at miniature size, written in the published formats
   (XOR-TyDi QA JSONL, an enwiki-style DPR TSV with header, a CORA-style TSV without one;
   `umr.rehearsal.data`) and served over HTTP by this process, so the download rules fetch
   them through their real code path (ranges, manifest, checksums); tiny models in the real
   checkpoint formats (`vocab.txt` BERT, `spiece.model` mT5/mT0, `pytorch_model.bin`) in a
   Hugging Face cache in hub layout (`umr.rehearsal.hub`), which `fetch_model` reads as an
   offline cluster would (`hub_cache`);
2. a single-node SLURM cluster (tests/slurm/cluster.sh, with one fake GPU) and the
   repository's own profile (slurm/config.yaml) with the `UMR_SLURM_*` site settings pointed
   at it; `--local` runs the same DAG with `snakemake --cores` instead;
3. a summary: wall time and jobs per rule in results/<dataset>/rehearsal.json, Table 3.

The sources are written once into results/<dataset>/sources/ and reused (same bytes: the
generators are deterministic), and the server listens on a fixed port, so a second run finds
every job's inputs and parameters unchanged and has nothing to redo.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from umr.config import load_config_files
from umr.errors import UMRError
from umr.io import atomic_file, log

REPO = Path(__file__).resolve().parents[2]
PAPER_CONFIG = REPO / "config.paper.yaml"
OVERRIDE_CONFIG = REPO / "config.rehearsal.yaml"
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
SRUN_WRAPPER_DIR = REPO / "tests" / "slurm" / "bin"
DEFAULT_PORT = 47831  # fixed: the URLs are rule parameters, a new port would rerun the downloads
# The rehearsal node (2 CPUs, the machine's memory) cannot grant the paper's 16-32 GB requests;
# the tiny models need far less. A site override, as a user's RULE_OVERRIDES would be.
NODE_MEM_MB = 3000
BIG_MEMORY_RULES = ("encode_corpus", "build_index", "retrieve", "rerank", "distill", "generate_questions", "evaluate",
                    "train_mgenq", "bm25_split_collection", "bm25_index", "bm25_search")
# The site profile waits 40 s before its first status check (right for a shared cluster);
# the rehearsal's jobs take seconds, so it polls every second, as the test profile does.
FAST_POLLING = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1")


def load_config(*paths: Path) -> dict[str, Any]:
    """The config Snakemake builds from several --configfile (later files' nested keys win), validated."""
    return load_config_files(*paths)


def prepare_sources(config: dict[str, Any], sources: Path) -> tuple[Path, Path, list[tuple[str, str]]]:
    """Published-format data files and the hub cache under `sources` (built once, deterministic)."""
    from umr import toy
    from umr.models import collection_texts
    from umr.rehearsal.data import write_published
    from umr.rehearsal.hub import build_hub_cache

    published, hub = sources / "published", sources / "hub"
    stamp = sources / "BUILT.json"
    # the generators' code is part of what the sources are built from: a fix rebuilds them
    code = [Path(m.__file__) for m in (toy, sys.modules["umr.rehearsal.data"], sys.modules["umr.rehearsal.hub"])]
    want = {"toy": config["toy"], "languages": config["languages"],
            "code": {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in code}}
    if stamp.exists() and json.loads(stamp.read_text(encoding="utf-8")) == want:
        log.info("sources in %s are up to date", sources)
        return published, hub, []
    shutil.rmtree(sources, ignore_errors=True)
    t = time.monotonic()
    sizes = dict(config["toy"], languages=tuple(config["languages"]))
    toy_files = toy.generate(toy.ToySizes(**sizes), sources / "toy")
    write_published(sources / "toy", published)
    texts = collection_texts([toy_files["corpus_xor_retrieve"], toy_files["corpus_xor_full"]])
    build_hub_cache(texts, hub)
    with atomic_file(stamp) as tmp:
        tmp.write_text(json.dumps(want, sort_keys=True), encoding="utf-8")
    log.info("wrote the rehearsal's sources to %s in %.0f s", sources, time.monotonic() - t)
    return published, hub, texts


def write_sources_config(path: Path, base_url: str, hub: Path) -> Path:
    """The third config file: where the downloads and the hub models come from."""
    from umr.rehearsal.data import PUBLISHED_NAMES

    sources = {"data": {"urls": {key: f"{base_url}/{name}" for key, name in PUBLISHED_NAMES.items()}},
               "hub_cache": str(hub.resolve())}
    text = ("# Written by `python -m umr.rehearsal`: the rehearsal's sources (local HTTP server, hub cache).\n"
            + yaml.safe_dump(sources, sort_keys=True))
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        with atomic_file(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return path


# -- SLURM ----------------------------------------------------------------------------------
def start_cluster() -> tuple[dict[str, str], bool]:
    """Start (or reuse) the single-node test cluster; returns its client environment and
    whether this call started it. Raises UMRError with the reason on one line."""
    if shutil.which("bash") is None or not CLUSTER_SH.exists():
        raise UMRError(f"cannot start SLURM: {CLUSTER_SH} or bash missing")
    already = subprocess.run(["bash", str(CLUSTER_SH), "status"], capture_output=True, text=True).returncode == 0
    if not already:
        log.info("starting a single-node SLURM cluster (tests/slurm/cluster.sh start; may apt-get install slurm-wlm)")
        done = subprocess.run(["bash", str(CLUSTER_SH), "start"], capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or done.stderr.strip().splitlines()
            reason = errors[-1] if errors else f"exit {done.returncode}"
            raise UMRError(f"cannot start a local SLURM cluster ({reason.strip()}); "
                           "`make rehearsal LOCAL=1` runs the same DAG without SLURM")
    line = subprocess.run(["bash", str(CLUSTER_SH), "env"], capture_output=True, text=True).stdout.strip()
    m = re.fullmatch(r"export SLURM_CONF=(\S+)", line)
    if m is None:
        raise UMRError(f"cannot start SLURM: unexpected `cluster.sh env` output {line!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "UMR_SLURM_"))}
    env.update(
        SLURM_CONF=m.group(1),
        UMR_TEST_SLURM_CONF=m.group(1),  # tests/slurm/bin/srun: srun inside jobs finds this cluster
        # the site settings a user exports, for this cluster (no accounting: squeue reports states)
        UMR_SLURM_PARTITION="local", UMR_SLURM_STATUS_COMMAND="squeue",
        PATH=os.pathsep.join([str(SRUN_WRAPPER_DIR), env.get("PATH", "")]),
    )
    return env, not already


def stop_cluster() -> None:
    done = subprocess.run(["bash", str(CLUSTER_SH), "stop"], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        log.warning("cluster.sh stop failed: %s", done.stderr.strip().splitlines()[-1:] or done.returncode)


# -- the run --------------------------------------------------------------------------------
# The paper run's two targets: the method and its baselines (`all`, what `snakemake --profile
# slurm` builds) and the ablation grids (`ablations`, Tables 4-6).
TARGETS = ("all", "ablations")


def snakemake_command(config_files: list[Path], workdir: Path, local: bool, cores: int, extra: list[str]) -> list[str]:
    # Extra arguments (targets, flags) go first: options with several values (--configfile,
    # --set-resources) would swallow a target after them.
    cmd = [sys.executable, "-m", "snakemake", *(extra or TARGETS), "--configfile", *map(str, config_files)]
    if workdir.resolve() != REPO:
        cmd += ["--directory", str(workdir)]
    if local:
        cmd += ["--cores", str(cores), "--printshellcmds", "--show-failed-logs"]
    else:
        cmd += ["--profile", "slurm", *FAST_POLLING,
                "--set-resources", *(f"{rule}:mem_mb={NODE_MEM_MB}" for rule in BIG_MEMORY_RULES)]
    return cmd


def jobs_per_rule(snakemake_log: str) -> dict[str, int]:
    """Jobs Snakemake started, by rule (`rule X:` / `localrule X:` blocks of its log)."""
    return dict(sorted(Counter(re.findall(r"^\[[^\]]+\]\n(?:local)?rule (\w+):$", snakemake_log, re.M)).items()))


def rehearse(*, local: bool, cores: int, port: int, keep_cluster: bool, extra: list[str],
             workdir: Path = REPO) -> dict[str, Any]:
    from umr.rehearsal.data import serve

    config = load_config(PAPER_CONFIG, OVERRIDE_CONFIG)
    workdir = Path(workdir).resolve()
    results = workdir / "results" / config["dataset"]
    sources = results / "sources"
    published, hub, _ = prepare_sources(config, sources)
    sources_config = sources / "sources.yaml"
    env = dict(os.environ)
    started = False
    if not local:
        env, started = start_cluster()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if Path(sys.prefix, "pyvenv.cfg").exists():
        env["VIRTUAL_ENV"] = sys.prefix
    logfile = results / "logs" / "rehearsal.snakemake.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    try:
        with serve(published, port=port) as base_url:
            write_sources_config(sources_config, base_url, hub)
            cmd = snakemake_command([PAPER_CONFIG, OVERRIDE_CONFIG, sources_config], workdir, local, cores, extra)
            log.info("$ %s", " ".join(cmd))
            log.info("following its output in %s", logfile)
            t = time.monotonic()
            with open(logfile, "w", encoding="utf-8") as out:
                proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
                try:
                    returncode = proc.wait()
                except BaseException:
                    proc.terminate()  # snakemake cancels its SLURM jobs on SIGTERM
                    proc.wait(timeout=120)
                    raise
            wall = time.monotonic() - t
    finally:
        if started and not keep_cluster:
            stop_cluster()
    text = logfile.read_text(encoding="utf-8", errors="replace")
    summary = {"mode": "local" if local else "slurm", "exit_status": returncode, "wall_seconds": round(wall, 1),
               "jobs_per_rule": jobs_per_rule(text), "snakemake_log": str(logfile.relative_to(workdir))}
    summary["jobs"] = sum(summary["jobs_per_rule"].values())
    with atomic_file(results / "rehearsal.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if returncode != 0:
        tail = "\n".join(text.splitlines()[-40:])
        raise UMRError(f"snakemake exited with {returncode} after {wall:.0f} s; its log: {logfile}\n{tail}")
    table3 = results / "tables" / "table3.md"
    print(f"rehearsal ({summary['mode']}): {summary['jobs']} jobs in {wall:.0f} s; "
          f"results in {results}/ (summary: rehearsal.json)")
    for rule, count in summary["jobs_per_rule"].items():
        print(f"  {rule:<24} {count:>4}")
    if table3.exists():
        print(table3.read_text(encoding="utf-8"))
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.rehearsal", description=__doc__.split("\n\n")[0])
    p.add_argument("--local", action="store_true", help="run the DAG with `snakemake --cores` instead of SLURM")
    p.add_argument("--cores", type=int, default=2, help="cores for --local")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port of the local HTTP server (fixed: "
                   "the URLs are rule parameters)")
    p.add_argument("--workdir", type=Path, default=REPO, help="Snakemake's working directory (results/ goes "
                   "there; default: the repository)")
    p.add_argument("--keep-cluster", action="store_true", help="leave a SLURM cluster this run started running")
    p.add_argument("snakemake_args", nargs="*", help="Snakemake arguments (after --) instead of the default targets "
                   "`all ablations`, e.g. a table")
    return p


def _main(args: argparse.Namespace) -> None:
    rehearse(local=args.local, cores=args.cores, port=args.port, keep_cluster=args.keep_cluster,
             extra=args.snakemake_args, workdir=args.workdir)
