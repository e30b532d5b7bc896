"""Atomic outputs, resumable work, logging and the shared command-line plumbing of the stages.

Every stage writes into a temporary sibling of its output (`.<name>.tmp-<pid>`)
and renames it into place only when complete, so a killed job never leaves a
file or directory that Snakemake (or a person) would take as finished. A
temporary sibling left behind by a killed process is removed by the next write
of the same output.

Long loops keep their finished pieces next to the output, never inside it:
`PartsDir` (`<out>.parts/`, one file per completed chunk, used by encoding and
reranking) and the distillation checkpoints (`<out>.checkpoints/`, see
`umr.distill`). Snakemake does not know these paths, so it neither deletes them
when a job fails nor takes them for outputs; the stage removes them once the
output is in place. Each holds a fingerprint of the inputs and settings it was
computed from: pieces of a different computation are discarded, never mixed in.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from umr.errors import UMRError

log = logging.getLogger("umr")


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_stale_tmp(path: Path) -> None:
    """Remove temporary siblings of `path` left by killed processes (`.<name>.tmp-<pid>`).

    Two processes never write the same output at once (Snakemake locks its
    outputs), so any such sibling not owned by this process is debris.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-[0-9]+")
    mine = _tmp_sibling(path).name
    try:
        entries = list(path.parent.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name != mine and pattern.fullmatch(entry.name):
            log.info("removing %s, left by an interrupted run", entry)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
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
    remove_stale_tmp(path)
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
        return getattr(err, "exit_code", 1)
    return 0


# -- resumable work ---------------------------------------------------------------------------
def path_identity(path: str | Path) -> Any:
    """What identifies a file or directory's content cheaply: (name, size, mtime) of its files.

    Used in fingerprints of resumable work: a model or corpus rebuilt since the
    pieces were computed has new mtimes, so the pieces are discarded. A string
    that is not a local path (a hub model id) identifies itself.
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    if path.is_dir():
        return sorted([str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns]
                      for f in path.rglob("*") if f.is_file())
    return str(path)


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON-serialisable value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def fingerprint_items(items: Iterable[Any]) -> str:
    """`fingerprint(list(items))`, the same hash, without the list or its JSON string in memory.

    json.dumps of a list is "[" + ", ".join(json.dumps of each item) + "]", so hashing those
    pieces one item at a time gives the same digest (checkpoints keyed by it still match), while
    memory holds one item's JSON instead of the whole (several GB for XOR-Full's passages).
    """
    digest = hashlib.sha256(b"[")
    for i, item in enumerate(items):
        if i:
            digest.update(b", ")
        digest.update(json.dumps(item, sort_keys=True, default=str).encode("utf-8"))
    digest.update(b"]")
    return digest.hexdigest()


def parts_path(out: str | Path) -> Path:
    """`<out>.parts`: where the finished chunks of `out` wait for the rest."""
    out = Path(out)
    return out.with_name(out.name + ".parts")


class PartsDir:
    """Finished chunks of one output, kept in `<out>.parts/` so a killed job redoes only the rest.

    `manifest.json` holds the fingerprint of what the chunks are computed from; a
    parts directory with another fingerprint (or none) is discarded with a warning.
    Each chunk file is written atomically, so one that exists is complete. The
    directory is created with the first chunk and removed by `remove()` once the
    merged output is in place.
    """

    MANIFEST = "manifest.json"

    def __init__(self, out: str | Path, key: Any):
        self.path = parts_path(out)
        self.key = fingerprint(key)
        self._checked = False

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if not self.path.exists():
            return
        try:
            found = json.loads((self.path / self.MANIFEST).read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            found = None
        if found != self.key:
            log.warning("%s holds chunks of a different computation (inputs or settings changed); discarding them",
                        self.path)
            shutil.rmtree(self.path)

    def done(self) -> list[str]:
        """Names of the finished chunks."""
        self._check()
        if not self.path.exists():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.name != self.MANIFEST and not p.name.startswith("."))

    def file(self, name: str) -> Path:
        return self.path / name

    @contextlib.contextmanager
    def write(self, name: str) -> Iterator[Path]:
        """Yield a temporary path for chunk `name`; it counts as finished once the block completes."""
        self._check()
        if not (self.path / self.MANIFEST).exists():
            self.path.mkdir(parents=True, exist_ok=True)
            with atomic_file(self.path / self.MANIFEST) as tmp:
                tmp.write_text(json.dumps({"fingerprint": self.key}) + "\n", encoding="utf-8")
        with atomic_file(self.path / name) as tmp:
            yield tmp

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


class Interrupted(UMRError):
    """The stage stopped on a signal after saving its state; rerunning the command resumes it.

    The exit status is 128 + the signal number, as if the signal had killed the process.
    """

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignals:
    """Turn SIGTERM/SIGUSR1 (time limit, preemption) into a flag a training loop checks between steps.

    SLURM sends SIGTERM at the time limit (and SIGKILL `KillWait` seconds later);
    the distill rule also asks for an early signal (`--signal`) so a checkpoint
    fits comfortably. Used as a context manager: the previous handlers come back
    on exit. Outside the main thread (no signal handlers possible) it is inert.
    """

    def __init__(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGUSR1)):
        self.signals = tuple(signals)
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signum
            log.warning("received %s: stopping after the current step", signal.Signals(signum).name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
