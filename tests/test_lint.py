"""`snakemake --lint` finds nothing to complain about in the workflow (Snakemake's best practices)."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO


def test_snakemake_lint_is_clean(tmp_path):
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
                           "--configfile", str(REPO / "config.yaml"), "--directory", str(tmp_path), "--lint"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Lints for" not in done.stdout + done.stderr, done.stdout[-3000:] + done.stderr[-3000:]
