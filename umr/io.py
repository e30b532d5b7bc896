"""Atomic outputs, logging and the shared command-line plumbing of the stages.

Every stage writes into a temporary sibling of its output and renames it into
place only when complete, so a killed job never leaves a file or directory that
Snakemake (or a person) would take as finished.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator, Sequence

from umr.errors import UMRError

log = logging.getLogger("umr")


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (if imported) for deterministic CPU runs."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def set_threads(threads: int) -> None:
    """Cap torch/BLAS threads to what the scheduler gave this job."""
    threads = max(1, int(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


def run_cli(build_parser: Callable[[], argparse.ArgumentParser], main: Callable[[argparse.Namespace], None],
            argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run a stage, and turn user errors into one-line messages.

    Returns the process exit status: 0 on success, 1 on a UMRError (bad config,
    input or model), whose message is printed as `error: ...` on one line.
    """
    parser = build_parser()
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        main(args)
    except UMRError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
