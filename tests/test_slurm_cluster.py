"""End-to-end tests of the SLURM profiles on a real single-node SLURM cluster.

The session fixture ``slurm_cluster`` starts munged + slurmctld + slurmd with
``tests/slurm/cluster.sh start`` (installing Debian's slurm-wlm with apt-get if
needed) and stops them again at the end of the session, also when tests fail.
A cluster that was already running before the session is reused and left running.

Needs root or passwordless sudo (skipped otherwise). Run only these tests with

    pytest -m slurm tests/test_slurm_cluster.py

The real pipeline runs through SLURM in tests/test_rehearsal.py (the paper configuration
rehearsed with the site profile); ``run_snakemake_on_slurm`` runs any workflow on the cluster.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SlurmCluster

REPO = Path(__file__).resolve().parents[1]
TEST_PROFILE = REPO / "tests" / "slurm" / "profile"
SITE_PROFILE = REPO / "slurm"
DUMMY_SNAKEFILE = REPO / "tests" / "slurm" / "dummy" / "Snakefile"
SRUN_WRAPPER_DIR = REPO / "tests" / "slurm" / "bin"

# Polling settings that make the site profile usable on the test cluster
# (its defaults wait 40 s before the first status check).
FAST_POLLING = (
    "--slurm-init-seconds-before-status-checks", "1",
    "--seconds-between-status-checks", "1",
)


def run_snakemake_on_slurm(
    cluster: SlurmCluster,
    snakefile: Path,
    directory: Path,
    configfile: Path | None = None,
    *,
    targets: tuple[str, ...] = (),
    profile: Path = TEST_PROFILE,
    extra_args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 1800,
) -> subprocess.CompletedProcess:
    """Run Snakemake through the test cluster and fail with its logs on error.

    ``snakefile``/``configfile`` may be the real pipeline's (``REPO / "Snakefile"``,
    ``REPO / "config.yaml"``); ``directory`` is the working directory (outputs,
    .snakemake/, and SLURM job logs in .snakemake/slurm_logs/); ``targets`` are
    files or rule names (default: the first rule). Returns the finished process
    with ``.elapsed`` (seconds) added.
    """
    cmd = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(snakefile),
        "--directory", str(directory),
        "--profile", str(profile),
    ]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(extra_args)
    cmd += list(targets)
    # Jobs inherit the submitting environment (sbatch --export=ALL), so put this
    # interpreter's bin/ first on PATH, as an activated venv would: the rules'
    # `python -m umr...` must find the same environment inside the jobs.
    bindir = str(Path(sys.executable).parent)
    run_env = dict(cluster.env, **(env or {}))
    # tests/slurm/bin/srun: the srun inside jobs must reach this cluster, not another one
    run_env["PATH"] = os.pathsep.join([bindir, str(SRUN_WRAPPER_DIR), run_env.get("PATH", "")])
    run_env["UMR_TEST_SLURM_CONF"] = cluster.env["SLURM_CONF"]
    if Path(sys.prefix, "pyvenv.cfg").exists():
        run_env["VIRTUAL_ENV"] = sys.prefix
    t = time.monotonic()
    with subprocess.Popen(
        cmd, cwd=REPO, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    ) as popen:
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGTERM first: snakemake then scancels its SLURM jobs
            popen.terminate()
            try:
                stdout, stderr = popen.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                popen.kill()
                stdout, stderr = popen.communicate()
            pytest.fail(
                f"snakemake did not finish within {timeout} s (a hang after the jobs "
                f"end means the status command cannot see finished jobs):\n"
                f"{stderr[-5000:]}\n{cluster.logs()}",
                pytrace=False,
            )
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    proc.elapsed = time.monotonic() - t  # type: ignore[attr-defined]
    if proc.returncode != 0:
        job_logs = ""
        for log in sorted(Path(directory, ".snakemake", "slurm_logs").rglob("*.log"))[-4:]:
            job_logs += f"\n----- {log} -----\n{log.read_text(errors='replace')[-3000:]}"
        pytest.fail(
            f"snakemake exited with {proc.returncode} after {proc.elapsed:.0f} s\n"
            f"$ {' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-8000:]}"
            f"{job_logs}\n{cluster.logs()}",
            pytrace=False,
        )
    return proc


def _kv(path: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in path.read_text().splitlines() if "=" in line
    )


@pytest.mark.slurm
def test_dummy_workflow_runs_on_slurm(slurm_cluster, tmp_path):
    """The test profile runs a CPU job and a `gpu=1` job as real SLURM jobs."""
    workdir = tmp_path / "dummy"
    proc = run_snakemake_on_slurm(slurm_cluster, DUMMY_SNAKEFILE, workdir)

    prep = _kv(workdir / "out" / "prepare.txt")
    gpu = _kv(workdir / "out" / "gpu.txt")
    assert prep["job_id"].isdigit(), prep  # ran inside a SLURM job
    assert prep["partition"] == "local"
    assert gpu["gpu_job_id"].isdigit() and gpu["gpu_job_id"] != prep["job_id"], gpu
    assert gpu["TresPerJob"] == "gres:gpu:1", gpu  # the gpu resource reached sbatch
    assert gpu["cuda_visible_devices"] != "unset", gpu  # and slurmd allocated the GPU
    assert gpu["TimeLimit"] == "00:10:00", gpu  # runtime=lambda wc, attempt: 10 * attempt
    assert (workdir / "benchmarks" / "gpu_step.tsv").exists()
    assert list((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))
    # With the default polling this takes minutes; the test profile polls fast.
    assert proc.elapsed < 120, f"took {proc.elapsed:.0f} s"


@pytest.mark.slurm
def test_site_profile_on_local_cluster(slurm_cluster, tmp_path):
    """slurm/config.yaml works on a cluster without accounting, with retries.

    Site settings come from the environment as users set them; the optional
    `flaky` rule fails on its first attempt, so the retry must get the
    attempt-dependent runtime (2 x 5 min).
    """
    workdir = tmp_path / "site"
    run_snakemake_on_slurm(
        slurm_cluster, DUMMY_SNAKEFILE, workdir,
        profile=SITE_PROFILE,
        extra_args=(*FAST_POLLING, "--config", "flaky=1"),
        env={"UMR_SLURM_PARTITION": "local", "UMR_SLURM_STATUS_COMMAND": "squeue",
             "UMR_SLURM_ACCOUNT": "", "UMR_SLURM_GPU_PARTITION": "",
             "UMR_SLURM_GPU_MODEL": ""},
    )
    flaky = _kv(workdir / "out" / "flaky.txt")
    assert flaky["attempt_marker"] == "second", flaky
    assert flaky["TimeLimit"] == "00:10:00", flaky
    assert _kv(workdir / "out" / "gpu.txt")["TresPerJob"] == "gres:gpu:1"


def test_site_profile_parses_with_site_settings(tmp_path):
    """`snakemake --profile slurm` reads the site settings from the environment.

    Dry run only: needs no cluster.
    """
    env = dict(
        os.environ,
        UMR_SLURM_ACCOUNT="id",  # a Python builtin's name must stay a string
        UMR_SLURM_PARTITION="cpu-part",
        UMR_SLURM_GPU_PARTITION="gpu-part",
        UMR_SLURM_GPU_MODEL="a100",
        UMR_SLURM_STATUS_COMMAND="squeue",
        UMR_SLURM_SKIP_SITE_CHECK="1",  # these partitions exist on no cluster this may run beside
    )
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text(
        "rule all:\n    input: 'e.txt', 'c.txt'\n"
        "rule encode_corpus:\n    output: 'e.txt'\n"
        "    resources: gpu=1, runtime=lambda wc, attempt: 7 * attempt\n"
        "    shell: 'touch {output}'\n"
        "rule cpu_rule:\n    output: 'c.txt'\n    shell: 'touch {output}'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n",
         "-s", str(snakefile), "--directory", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    res = {
        rule: line
        for rule, line in re.findall(r"rule (\w+):.*?\n\s+resources: ([^\n]*)", out, re.S)
    }
    assert "slurm_account=id," in res["cpu_rule"] and "slurm_partition=cpu-part" in res["cpu_rule"]
    enc = res["encode_corpus"]
    for expected in ("slurm_partition=gpu-part", "gpu=1", "gpu_model=a100", "runtime=7"):
        assert expected in enc, enc


@pytest.mark.slurm
def test_site_profile_names_a_partition_the_cluster_lacks(slurm_cluster, tmp_path):
    """A wrong partition stops the run before any submission, naming the variable to set."""
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    env = dict(slurm_cluster.env, UMR_SLURM_PARTITION="no-such-partition")
    env.pop("UMR_SLURM_SKIP_SITE_CHECK", None)
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-s", str(snakefile), "--directory", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "partition 'no-such-partition' (UMR_SLURM_PARTITION) does not exist here" in proc.stderr, proc.stderr[-3000:]
    assert "sinfo lists: local" in proc.stderr and "slurm/config.yaml" in proc.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / ".snakemake" / "slurm_logs").exists()


def _fake_slurm_clients(bindir: Path, *, partitions: str, enforce: str, default_account: str) -> None:
    """`sinfo`, `scontrol` and `sacctmgr` stand-ins answering like a site with these settings.

    And an `squeue` that lists no job: the SLURM executor plugin refuses to start without a
    status command, so without it these tests would pass only after the real cluster's tests
    installed SLURM.
    """
    bindir.mkdir()
    scripts = {
        "sinfo": f'case "$*" in *%G*) echo "gpu:a100:4";; *) printf \'{partitions}\';; esac',
        "scontrol": f"echo 'AccountingStorageEnforce = {enforce}'",
        "sacctmgr": f'case "$*" in *defaultaccount*) echo "{default_account}";; *) printf \'proj-a\\nproj-b\\n\';; esac',
        "squeue": "exit 0",
    }
    for name, body in scripts.items():
        (bindir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bindir / name).chmod(0o755)


@pytest.mark.parametrize("case, settings, message", [
    ("no default partition", {}, "this cluster has no default partition (sinfo lists: cpu, gpu) and "
                                 "UMR_SLURM_PARTITION is not set. Set UMR_SLURM_PARTITION"),
    ("account required", {"UMR_SLURM_PARTITION": "cpu"},
     "this cluster requires an account (AccountingStorageEnforce=associations,limits)"),
    ("wrong GPU partition", {"UMR_SLURM_PARTITION": "cpu", "UMR_SLURM_ACCOUNT": "proj-a",
                             "UMR_SLURM_GPU_PARTITION": "gpus"},
     "partition 'gpus' (UMR_SLURM_GPU_PARTITION) does not exist here (sinfo lists: cpu, gpu)"),
    ("complete", {"UMR_SLURM_PARTITION": "cpu", "UMR_SLURM_ACCOUNT": "proj-a", "UMR_SLURM_GPU_PARTITION": "gpu"},
     None),
])
def test_site_check_says_where_to_set_account_and_partition(tmp_path, case, settings, message):
    """On a site that needs an account and a partition, a missing one is named before anything runs.

    No cluster needed: fake SLURM clients describe a site without a default partition that
    enforces associations, where the user has no default account.
    """
    _fake_slurm_clients(tmp_path / "bin", partitions="cpu\\ngpu\\n", enforce="associations,limits",
                        default_account="")
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("rule all:\n    output: 'x'\n    shell: 'touch {output}'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UMR_SLURM_", "SBATCH_"))}
    env.update(settings, PATH=os.pathsep.join([str(tmp_path / "bin"), env.get("PATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n", "-s", str(snakefile),
         "--directory", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    if message is None:
        assert proc.returncode == 0, proc.stderr[-3000:]
        return
    assert proc.returncode != 0
    error = proc.stderr.strip().splitlines()[-1]
    assert message in error and "SITE SETTINGS block at the top of slurm/config.yaml" in error, error
    if case == "account required":
        assert "Set UMR_SLURM_ACCOUNT" in error and "(your accounts: proj-a, proj-b)" in error, error


def test_site_profile_parses_without_site_settings(tmp_path):
    """With no UMR_SLURM_*/SBATCH_* set the profile still parses (no empty set-resources)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("UMR_SLURM_", "SBATCH_"))}
    env["UMR_SLURM_SKIP_SITE_CHECK"] = "1"  # not about a cluster (test_site_check_* are)
    snakefile = tmp_path / "Snakefile"
    snakefile.write_text("rule encode_corpus:\n    output: 'e.txt'\n    shell: 'touch {output}'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "slurm", "-n",
         "-s", str(snakefile), "--directory", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "slurm_partition" not in proc.stdout and "slurm_account" not in proc.stdout
