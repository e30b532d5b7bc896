"""Stage: fetch the paper's data files and hub models, once, resumably, verified.

Data files (XOR-TyDi QA questions, the DPR-format collections of SPEC §2) are plain
HTTP(S) downloads:

- resumable: bytes go to `<out>.part`; a later attempt (the same job retrying, or the
  rule rerun after a killed job) asks the server for the rest with a `Range` request,
  guarded by `If-Range` (the ETag / Last-Modified seen first, kept in `<out>.part.json`)
  so a file that changed upstream in between is fetched whole again instead of spliced;
- verified: size and sha256 of every completed file are recorded in a manifest
  (`results/<dataset>/data/MANIFEST.json`) on its first download ("trust on first use")
  and every later download of the same file must match them, as must a sha256 pinned in
  the config (`data.sha256`). A mismatch removes the file and fails with one line;
- atomic: the output appears (rename of the `.part`) only once complete and verified.

Hub models are fetched with `huggingface_hub.snapshot_download` into a local
directory that `from_pretrained` reads, at a revision resolved to a commit (recorded
in `UMR_SOURCE.json` inside it), so the GPU jobs run with `HF_HUB_OFFLINE=1`. Offline clusters
name a pre-populated Hugging Face cache instead (`hub_cache` in the config, `--hub-cache`):
the snapshot is then copied from it, no network involved.

    python -m umr.download file --url URL --out PATH --manifest MANIFEST.json --key corpus/xor_full.tsv
    python -m umr.download model --repo-id facebook/mcontriever --out results/xor/models/hub/mcontriever
    python -m umr.download model --repo-id facebook/mcontriever --out ... --hub-cache ~/.cache/huggingface/hub
    python -m umr.download verify --manifest MANIFEST.json --root results/xor/data
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import fnmatch
import hashlib
import http.client
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from umr.errors import UMRError
from umr.io import atomic_file, log, run_cli

CHUNK = 1 << 20  # bytes per read
USER_AGENT = "umr-pipeline/0.1 (+resumable download)"


class ChecksumError(UMRError):
    """A completed download differs from its recorded or pinned size/sha256."""


@dataclass(frozen=True)
class FileRecord:
    size: int
    sha256: str


def file_digest(path: str | Path) -> FileRecord:
    """Size and sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            h.update(block)
            size += len(block)
    return FileRecord(size, h.hexdigest())


# -- manifest -------------------------------------------------------------------------------
@contextlib.contextmanager
def _locked_manifest(path: Path) -> Iterator[dict]:
    """Read-modify-write the manifest under an exclusive lock (parallel download jobs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = read_manifest(path)
            before = json.dumps(entries, sort_keys=True)
            yield entries
            if json.dumps(entries, sort_keys=True) != before:
                with atomic_file(path) as tmp:
                    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UMRError(f"{path}: unreadable download manifest ({err.msg}, line {err.lineno}); fix or delete it") from None
    if not isinstance(entries, dict):
        raise UMRError(f"{path}: a download manifest must map file keys to {{size, sha256}}")
    return entries


def check_record(got: FileRecord, key: str, *, recorded: dict | None, pinned_sha256: str | None,
                 manifest: Path | None) -> None:
    """Raise ChecksumError if `got` differs from the manifest entry or the pinned sha256."""
    if pinned_sha256 and got.sha256 != pinned_sha256.lower():
        raise ChecksumError(f"{key}: sha256 {got.sha256} does not match the sha256 pinned in the config "
                            f"(data.sha256: {pinned_sha256}); the file was removed")
    if recorded:
        if got.size != recorded.get("size") or got.sha256 != recorded.get("sha256"):
            raise ChecksumError(
                f"{key}: downloaded {got.size} bytes with sha256 {got.sha256}, but {manifest} recorded "
                f"{recorded.get('size')} bytes with sha256 {recorded.get('sha256')} on {recorded.get('downloaded', '?')}; "
                f"the file was removed (if the file changed upstream on purpose, delete its entry and rerun)")


# -- HTTP -------------------------------------------------------------------------------------
def _request(url: str, headers: dict[str, str], timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **headers})
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http/https URLs from the config)


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """`bytes START-END/TOTAL` -> (START, TOTAL or None)."""
    if not value or not value.startswith("bytes "):
        return None
    spec, _, total = value[6:].partition("/")
    start = spec.split("-", 1)[0]
    if not start.isdigit():
        return None
    return int(start), (int(total) if total.isdigit() else None)


def _fetch_once(url: str, part: Path, meta: Path, timeout: float) -> None:
    """One HTTP attempt: resume `part` if possible, else (re)start it. Raises on errors."""
    have = part.stat().st_size if part.exists() else 0
    validator = None
    if have and meta.exists():
        with contextlib.suppress(ValueError, OSError):
            saved = json.loads(meta.read_text())
            if saved.get("url") == url:
                etag = saved.get("etag") or ""
                # a weak ETag may not be used in If-Range (RFC 9110): fall back to the date
                validator = (etag if etag and not etag.startswith("W/") else None) or saved.get("last_modified")
    if have and not validator:
        have = 0  # a part without a validator cannot be resumed safely
    headers = {"Range": f"bytes={have}-", "If-Range": validator} if have else {}
    try:
        response = _request(url, headers, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: `part` may already be complete
            total = (err.headers.get("Content-Range") or "").rpartition("/")[2]  # `bytes */TOTAL`
            if total.isdigit() and int(total) == have:
                return
            part.unlink(missing_ok=True)  # inconsistent: start over on the next attempt
        raise
    with response:
        status = response.status
        if status == 206:
            rng = _content_range(response.headers.get("Content-Range"))
            if rng is None or rng[0] != have:
                raise OSError(f"server answered an unexpected range {response.headers.get('Content-Range')!r}")
            mode, total = "ab", rng[1]
            log.info("resuming %s at byte %d", url, have)
        elif status == 200:
            mode, have = "wb", 0  # no range support, or the file changed (If-Range): whole file
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            meta.write_text(json.dumps({"url": url, "etag": response.headers.get("ETag"),
                                        "last_modified": response.headers.get("Last-Modified")}))
        else:
            raise OSError(f"unexpected HTTP status {status}")
        done, last_report = have, time.monotonic()
        with open(part, mode) as handle:
            while block := response.read(CHUNK):
                handle.write(block)
                done += len(block)
                if time.monotonic() - last_report > 30:
                    log.info("%s: %.2f GB%s", part.name, done / 1e9, f" of {total / 1e9:.2f} GB" if total else "")
                    last_report = time.monotonic()
    if total is not None and done != total:
        raise OSError(f"connection closed after {done} of {total} bytes")


def fetch_to_part(url: str, part: Path, *, attempts: int = 5, timeout: float = 60, backoff: float = 2.0) -> None:
    """Download `url` into `part`, resuming after errors (up to `attempts` tries)."""
    part.parent.mkdir(parents=True, exist_ok=True)
    meta = part.with_name(part.name + ".json")
    for attempt in range(1, attempts + 1):
        try:
            _fetch_once(url, part, meta, timeout)
            return
        except urllib.error.HTTPError as err:
            if err.code < 500 and err.code not in (408, 429, 416):
                raise UMRError(f"{url}: HTTP {err.code} {err.reason}") from None
            reason = f"HTTP {err.code} {err.reason}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
            reason = str(getattr(err, "reason", err)) or type(err).__name__
        if attempt == attempts:
            have = part.stat().st_size if part.exists() else 0
            raise UMRError(f"{url}: download failed after {attempts} attempts ({reason}); "
                           f"{have} bytes kept in {part}, rerun to resume")
        wait = backoff * 2 ** (attempt - 1)
        log.warning("%s: %s; retrying in %.0f s (attempt %d of %d)", url, reason, wait, attempt + 1, attempts)
        time.sleep(wait)


def download_file(url: str, out: str | Path, *, manifest: str | Path | None = None, key: str | None = None,
                  sha256: str | None = None, attempts: int = 5, timeout: float = 60, backoff: float = 2.0) -> FileRecord:
    """Fetch `url` to `out` (resumable via `<out>.part`), verify, record, then rename into place.

    `manifest`/`key`: the first completed download of `key` records its size and sha256;
    every later one must match. `sha256` (optional) pins the expected checksum.
    """
    out = Path(out)
    key = key or out.name
    part = out.with_name(out.name + ".part")
    fetch_to_part(url, part, attempts=attempts, timeout=timeout, backoff=backoff)
    got = file_digest(part)
    manifest_path = Path(manifest) if manifest else None
    try:
        if manifest_path is None:
            check_record(got, key, recorded=None, pinned_sha256=sha256, manifest=None)
        else:
            with _locked_manifest(manifest_path) as entries:
                check_record(got, key, recorded=entries.get(key), pinned_sha256=sha256, manifest=manifest_path)
                if key not in entries:
                    entries[key] = {"url": url, "size": got.size, "sha256": got.sha256,
                                    "downloaded": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
                    log.info("recorded %s in %s (%d bytes, sha256 %s)", key, manifest_path, got.size, got.sha256)
    except ChecksumError:
        part.unlink(missing_ok=True)
        part.with_name(part.name + ".json").unlink(missing_ok=True)
        raise
    os.replace(part, out)
    part.with_name(part.name + ".json").unlink(missing_ok=True)
    log.info("downloaded %s -> %s (%d bytes, sha256 %s)", url, out, got.size, got.sha256)
    return got


def verify_files(manifest: str | Path, root: str | Path, keys: list[str] | None = None) -> list[str]:
    """Check files under `root` against the manifest; returns one line per problem."""
    entries = read_manifest(manifest)
    problems = []
    for key in keys or sorted(entries):
        path = Path(root) / key
        if key not in entries:
            problems.append(f"{key}: not in {manifest}")
        elif not path.exists():
            problems.append(f"{key}: missing ({path})")
        else:
            got = file_digest(path)
            if (got.size, got.sha256) != (entries[key]["size"], entries[key]["sha256"]):
                problems.append(f"{key}: {got.size} bytes, sha256 {got.sha256}; manifest says "
                                f"{entries[key]['size']} bytes, sha256 {entries[key]['sha256']}")
    return problems


# -- hub models -----------------------------------------------------------------------------------
# Weights in formats the PyTorch code never reads.
IGNORED_WEIGHTS = ["*.msgpack", "*.h5", "*.ot", "*.onnx", "*.tflite", "flax_model*", "tf_model*", "rust_model*",
                   "onnx/*", "openvino/*", "coreml/*"]


def ignore_patterns(filenames: list[str]) -> list[str]:
    """Skip other frameworks' weights, and PyTorch .bin files when safetensors exist."""
    patterns = list(IGNORED_WEIGHTS)
    if any(name.endswith(".safetensors") for name in filenames):
        patterns += ["pytorch_model*.bin"]
    return patterns


def fetch_model(repo_id: str, out: str | Path, revision: str = "main", hub_cache: str | Path | None = None) -> Path:
    """Snapshot a hub model into `out` (resumable through `<out>.part/`) and record its commit.

    With `hub_cache` (a Hugging Face cache directory in hub layout, e.g. a copy of
    ~/.cache/huggingface/hub), the snapshot is copied from there instead, offline
    (`copy_from_hub_cache`).
    """
    if hub_cache is not None:
        return copy_from_hub_cache(repo_id, out, revision, hub_cache)
    # This is the one step allowed online; jobs get HF_HUB_OFFLINE=1 (rules/common.smk).
    # huggingface_hub reads the variable at import, so set it before importing.
    os.environ["HF_HUB_OFFLINE"] = "0"
    os.environ.pop("TRANSFORMERS_OFFLINE", None)
    from huggingface_hub import HfApi, snapshot_download

    out = Path(out)
    part = out.with_name(out.name + ".part")
    try:
        info = HfApi().model_info(repo_id, revision=revision)
    except Exception as err:  # noqa: BLE001 (network, auth, missing repo: one line either way)
        raise UMRError(f"{repo_id}@{revision}: cannot reach the Hugging Face hub ({type(err).__name__}: "
                       f"{str(err).strip().splitlines()[0] if str(err).strip() else ''})") from None
    files = [s.rfilename for s in info.siblings or []]
    patterns = ignore_patterns(files)
    log.info("fetching %s at commit %s (%d files, skipping %s)", repo_id, info.sha, len(files), ", ".join(patterns))
    snapshot_download(repo_id, revision=info.sha, local_dir=part, ignore_patterns=patterns)
    if not (part / "config.json").exists():
        raise UMRError(f"{repo_id}: the snapshot has no config.json; not a transformers model")
    shutil.rmtree(part / ".cache", ignore_errors=True)  # huggingface_hub's resume metadata
    _write_source(part, repo_id, revision, info.sha, "hub")
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    log.info("wrote %s", out)
    return out


def _write_source(snapshot: Path, repo_id: str, revision: str, commit: str, source: str) -> None:
    """`UMR_SOURCE.json`: where a local model directory came from."""
    (snapshot / "UMR_SOURCE.json").write_text(json.dumps(
        {"repo_id": repo_id, "revision": revision, "commit": commit, "source": source,
         "files": sorted(str(p.relative_to(snapshot)) for p in snapshot.rglob("*") if p.is_file())}, indent=2) + "\n")


COMMIT = re.compile(r"^[0-9a-f]{40}$")


def _matches(name: str, patterns: list[str]) -> bool:
    """huggingface_hub's ignore-pattern test (fnmatch; a pattern ending in "/" covers the folder)."""
    return any(fnmatch.fnmatch(name, p + "*" if p.endswith("/") else p) for p in patterns)


def hub_cache_snapshot(repo_id: str, revision: str, hub_cache: str | Path) -> tuple[str, Path]:
    """(commit, snapshot directory) of `repo_id` at `revision` in a hub-layout cache; a one-line UMRError if absent.

    The layout is huggingface_hub's: `models--<org>--<name>/refs/<revision>` holds the
    commit of a branch or tag, `snapshots/<commit>/` the files (symlinks into `blobs/`).
    A revision that is a commit hash needs no ref. `hub_cache` may also be the directory
    above `hub/` (~/.cache/huggingface).
    """
    cache = Path(hub_cache).expanduser()
    where = f"{repo_id}@{revision} in hub cache {cache}"
    if not cache.is_dir():
        raise UMRError(f"{where}: the hub cache directory does not exist")
    folder = f"models--{repo_id.replace('/', '--')}"
    repo = cache / folder
    if not repo.is_dir() and (cache / "hub" / folder).is_dir():
        repo = cache / "hub" / folder
    if not repo.is_dir():
        raise UMRError(f"{where}: no {folder}/ (fill the cache with `hf download {repo_id} "
                       f"--revision {revision} --cache-dir {cache}` where there is internet)")
    ref = repo / "refs" / revision
    if ref.is_file():
        commit = ref.read_text(encoding="utf-8").strip()
    elif COMMIT.match(revision):
        commit = revision
    else:
        refs = sorted(str(p.relative_to(repo / "refs")) for p in (repo / "refs").rglob("*") if p.is_file())
        raise UMRError(f"{where}: no ref {revision!r} (the cache has refs: {', '.join(refs) or 'none'})")
    snapshot = repo / "snapshots" / commit
    if not COMMIT.match(commit) or not snapshot.is_dir():
        raise UMRError(f"{where}: no snapshot for commit {commit!r} ({snapshot} is missing)")
    return commit, snapshot


def copy_from_hub_cache(repo_id: str, out: str | Path, revision: str, hub_cache: str | Path) -> Path:
    """Copy a model's snapshot from a hub-layout cache into `out`, offline, atomically; record its commit.

    Files are copied (symlinks into `blobs/` followed), skipping the same unused weight
    formats as a download (`ignore_patterns`), into `<out>.part/`, which becomes `out`
    only when complete: a failure leaves neither behind.
    """
    out = Path(out)
    part = out.with_name(out.name + ".part")
    commit, snapshot = hub_cache_snapshot(repo_id, revision, hub_cache)
    where = f"{repo_id}@{revision} in hub cache {hub_cache}"
    files = sorted(str(p.relative_to(snapshot).as_posix()) for p in snapshot.rglob("*")
                   if p.is_file() or p.is_symlink())
    if "config.json" not in files:
        raise UMRError(f"{where}: snapshot {commit} has no config.json; not a transformers model")
    patterns = ignore_patterns(files)
    wanted = [name for name in files if not _matches(name, patterns)]
    log.info("copying %s at commit %s from hub cache %s (%d files, skipping %s)", repo_id, commit, hub_cache,
             len(wanted), ", ".join(patterns))
    shutil.rmtree(part, ignore_errors=True)
    try:
        for name in wanted:
            source = snapshot / name
            if not source.exists():
                raise UMRError(f"{where}: {name} of snapshot {commit} is a broken link (its blob is missing)")
            (part / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, part / name)  # follows the symlink into blobs/
        _write_source(part, repo_id, revision, commit, f"hub-cache:{Path(hub_cache).expanduser().resolve()}")
        if out.exists():
            shutil.rmtree(out)
        os.replace(part, out)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    log.info("wrote %s", out)
    return out


# -- CLI ------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.download", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("file", help="resumable, verified HTTP download of one file")
    f.add_argument("--url", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--manifest", help="JSON manifest of sizes/sha256 (recorded on first download, checked after)")
    f.add_argument("--key", help="the file's key in the manifest (default: the output's name)")
    f.add_argument("--sha256", default="", help="expected sha256 (optional pin)")
    f.add_argument("--attempts", type=int, default=5, help="tries (each resumes the last) before failing")
    f.add_argument("--timeout", type=float, default=60, help="seconds without data before a try fails")
    m = sub.add_parser("model", help="snapshot a Hugging Face model into a local directory")
    m.add_argument("--repo-id", required=True)
    m.add_argument("--revision", default="main")
    m.add_argument("--out", required=True)
    m.add_argument("--hub-cache", help="copy from this Hugging Face cache in hub layout (models--org--name/...), "
                                       "offline, instead of downloading")
    v = sub.add_parser("verify", help="check downloaded files against the manifest")
    v.add_argument("--manifest", required=True)
    v.add_argument("--root", required=True, help="directory the manifest keys are relative to")
    v.add_argument("keys", nargs="*", help="keys to check (default: all)")
    return p


def _main(args: argparse.Namespace) -> None:
    if args.command == "file":
        download_file(args.url, args.out, manifest=args.manifest, key=args.key, sha256=args.sha256 or None,
                      attempts=args.attempts, timeout=args.timeout)
    elif args.command == "model":
        fetch_model(args.repo_id, args.out, args.revision, args.hub_cache)
    else:
        problems = verify_files(args.manifest, args.root, args.keys or None)
        if problems:
            raise UMRError(f"{len(problems)} file(s) do not match {args.manifest}: " + "; ".join(problems))
        log.info("all files match %s", args.manifest)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
