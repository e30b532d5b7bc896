"""The resumable, verified downloader (umr.download) against a local HTTP server.

Nothing leaves the machine: a `http.server` in a thread serves bytes from memory,
honours `Range`/`If-Range` like the real file servers, and can be told to cut the
connection after N bytes (a dropped download) or to change the file (upstream edit).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from umr import download
from umr.errors import UMRError

REPO = Path(__file__).resolve().parents[1]


class FileServer:
    """Serves `files[path] = bytes`; records requests; optional cut-off and range support."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.etags: dict[str, str] = {}
        self.cut_after: int | None = None  # close the connection after sending this many body bytes (once)
        self.support_ranges = True
        self.requests: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 (http.server API)
                server.requests.append({"path": self.path, "range": self.headers.get("Range"),
                                        "if_range": self.headers.get("If-Range")})
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                etag = server.etags.setdefault(self.path, f'"{hashlib.md5(body).hexdigest()}"')
                start = 0
                rng = self.headers.get("Range")
                if server.support_ranges and rng and self.headers.get("If-Range") in (None, etag):
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("ETag", etag)
                if server.support_ranges:
                    self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                payload = body[start:]
                if server.cut_after is not None:
                    payload, server.cut_after = payload[: server.cut_after], None
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    with FileServer() as srv:
        yield srv


def _payload(n: int = 300_000, seed: int = 0) -> bytes:
    return bytes((i * 7919 + seed) % 251 for i in range(n))


FAST = dict(attempts=3, timeout=5, backoff=0.01)


def test_download_records_size_and_sha256_in_manifest(server, tmp_path):
    body = _payload()
    server.files["/xor_dev.jsonl"] = body
    out, manifest = tmp_path / "data" / "xor_retrieve" / "dev.jsonl", tmp_path / "data" / "MANIFEST.json"
    got = download.download_file(server.url("/xor_dev.jsonl"), out, manifest=manifest, key="xor_retrieve/dev.jsonl", **FAST)
    assert out.read_bytes() == body
    assert got == download.FileRecord(len(body), hashlib.sha256(body).hexdigest())
    entry = json.loads(manifest.read_text())["xor_retrieve/dev.jsonl"]
    assert entry["size"] == len(body) and entry["sha256"] == hashlib.sha256(body).hexdigest()
    assert entry["url"] == server.url("/xor_dev.jsonl")
    assert not list(out.parent.glob("*.part*"))  # nothing left behind


def test_interrupted_download_resumes_with_range_request(server, tmp_path):
    body = _payload()
    server.files["/corpus.tsv"] = body
    server.cut_after = 100_000  # the first response dies after 100 kB
    out = tmp_path / "corpus.tsv"
    download.download_file(server.url("/corpus.tsv"), out, **FAST)
    assert out.read_bytes() == body
    assert [r["range"] for r in server.requests] == [None, "bytes=100000-"]
    assert server.requests[1]["if_range"] == server.etags["/corpus.tsv"]


def test_resume_across_runs_from_part_file(server, tmp_path):
    """A killed job leaves `<out>.part`; the rerun fetches only the rest."""
    body = _payload()
    server.files["/corpus.tsv"] = body
    server.cut_after = 120_000
    out = tmp_path / "corpus.tsv"
    with pytest.raises(UMRError, match="rerun to resume"):
        download.download_file(server.url("/corpus.tsv"), out, attempts=1, timeout=5, backoff=0.01)
    part = out.with_name("corpus.tsv.part")
    assert part.stat().st_size == 120_000 and not out.exists()
    download.download_file(server.url("/corpus.tsv"), out, **FAST)
    assert out.read_bytes() == body
    assert server.requests[-1]["range"] == "bytes=120000-"


def test_complete_part_file_is_verified_not_fetched_again(server, tmp_path):
    """A job killed after the last byte but before the rename: the server answers 416, nothing is refetched."""
    body = _payload()
    server.files["/corpus.tsv"] = body
    out = tmp_path / "corpus.tsv"
    part, meta = tmp_path / "corpus.tsv.part", tmp_path / "corpus.tsv.part.json"
    part.write_bytes(body)
    server.etags["/corpus.tsv"] = etag = '"v1"'
    meta.write_text(json.dumps({"url": server.url("/corpus.tsv"), "etag": etag, "last_modified": None}))
    download.download_file(server.url("/corpus.tsv"), out, **FAST)
    assert out.read_bytes() == body and not part.exists() and not meta.exists()
    assert [r["range"] for r in server.requests] == [f"bytes={len(body)}-"]


def test_changed_upstream_file_is_fetched_whole_not_spliced(server, tmp_path):
    server.files["/f"] = _payload(seed=1)
    server.cut_after = 50_000
    out = tmp_path / "f"
    with pytest.raises(UMRError):
        download.download_file(server.url("/f"), out, attempts=1, timeout=5, backoff=0.01)
    server.files["/f"] = new = _payload(seed=2)  # new content, new ETag: If-Range fails -> 200
    server.etags.clear()
    download.download_file(server.url("/f"), out, **FAST)
    assert out.read_bytes() == new


def test_server_without_range_support_restarts(server, tmp_path):
    body = _payload()
    server.files["/f"] = body
    server.support_ranges = False
    server.cut_after = 10_000
    out = tmp_path / "f"
    download.download_file(server.url("/f"), out, **FAST)
    assert out.read_bytes() == body


def test_checksum_mismatch_removes_file_and_fails(server, tmp_path):
    """A later download that differs from the manifest's record fails and leaves nothing."""
    manifest = tmp_path / "MANIFEST.json"
    server.files["/q.jsonl"] = _payload(seed=3)
    out = tmp_path / "q.jsonl"
    download.download_file(server.url("/q.jsonl"), out, manifest=manifest, key="q.jsonl", **FAST)
    out.unlink()  # e.g. results deleted, or the rule rerun
    server.files["/q.jsonl"] = _payload(seed=4)
    server.etags.clear()
    with pytest.raises(download.ChecksumError, match=r"q.jsonl: downloaded .* but .*MANIFEST.json recorded .* removed"):
        download.download_file(server.url("/q.jsonl"), out, manifest=manifest, key="q.jsonl", **FAST)
    assert not out.exists() and not list(tmp_path.glob("q.jsonl.part*"))
    assert json.loads(manifest.read_text())["q.jsonl"]["sha256"] == hashlib.sha256(_payload(seed=3)).hexdigest()


def test_pinned_sha256_mismatch_fails_on_first_download(server, tmp_path):
    server.files["/q"] = _payload()
    out = tmp_path / "q"
    with pytest.raises(download.ChecksumError, match="pinned"):
        download.download_file(server.url("/q"), out, sha256="0" * 64, manifest=tmp_path / "M.json", **FAST)
    assert not out.exists() and not (tmp_path / "M.json").exists()


def test_http_404_is_one_line_error(server, tmp_path):
    with pytest.raises(UMRError, match="HTTP 404"):
        download.download_file(server.url("/missing"), tmp_path / "x", **FAST)


def test_cli_mismatch_exits_1_with_one_line_error(server, tmp_path):
    """What the rule's log shows: `error: ...` on one line, exit status 1, no file."""
    manifest = tmp_path / "MANIFEST.json"
    server.files["/c.tsv"] = body = _payload(20_000)
    manifest.write_text(json.dumps({"corpus/c.tsv": {"size": len(body), "sha256": "ab" * 32}}))
    out = tmp_path / "corpus" / "c.tsv"
    proc = subprocess.run(
        [sys.executable, "-m", "umr.download", "file", "--url", server.url("/c.tsv"), "--out", str(out),
         "--manifest", str(manifest), "--key", "corpus/c.tsv", "--attempts", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "corpus/c.tsv" in errors[0] and "removed" in errors[0], proc.stderr
    assert not out.exists()


def test_verify_reports_changed_files(server, tmp_path):
    manifest = tmp_path / "MANIFEST.json"
    server.files["/a"] = _payload(1000)
    download.download_file(server.url("/a"), tmp_path / "a", manifest=manifest, key="a", **FAST)
    assert download.verify_files(manifest, tmp_path) == []
    (tmp_path / "a").write_bytes(b"tampered")
    assert download.verify_files(manifest, tmp_path)[0].startswith("a: 8 bytes")


def test_model_fetch_skips_unused_weight_formats():
    files = ["config.json", "pytorch_model.bin", "model.safetensors", "tf_model.h5", "flax_model.msgpack"]
    patterns = download.ignore_patterns(files)
    assert "pytorch_model*.bin" in patterns and "tf_model*" in patterns and "*.msgpack" in patterns
    assert "pytorch_model*.bin" not in download.ignore_patterns(["config.json", "pytorch_model.bin"])


# -- the rules (rules/data.smk) ------------------------------------------------------------------
def _paper_config_with(tmp_path: Path, urls: dict[str, str], sha256: dict[str, str] | None = None) -> Path:
    """config.paper.yaml with some download URLs pointed at the local server."""
    import yaml

    config = yaml.safe_load((REPO / "config.paper.yaml").read_text())
    config["data"] = {"urls": urls, "sha256": sha256 or {}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _snakemake(tmp_path: Path, configfile: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path / "run"),
         "--configfile", str(configfile), "--cores", "1", *targets],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )


def test_download_rule_records_then_rejects_a_changed_file(server, tmp_path):
    """`download_questions` as Snakemake runs it: manifest on the first run; a changed file fails the rule."""
    server.files["/xor_dev.jsonl"] = first = b'{"id": "q1", "question": "?", "answers": ["a"], "lang": "ja"}\n'
    config = _paper_config_with(tmp_path, {"xor_retrieve/dev.jsonl": server.url("/xor_dev.jsonl")})
    target = "results/xor/data/xor_retrieve/dev.jsonl"
    out, manifest = tmp_path / "run" / target, tmp_path / "run" / "results" / "xor" / "data" / "MANIFEST.json"
    done = _snakemake(tmp_path, config, target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert out.read_bytes() == first
    assert json.loads(manifest.read_text())["xor_retrieve/dev.jsonl"]["sha256"] == hashlib.sha256(first).hexdigest()

    out.unlink()
    server.files["/xor_dev.jsonl"] = b'{"id": "q1", "question": "changed", "answers": ["a"], "lang": "ja"}\n'
    server.etags.clear()
    failed = _snakemake(tmp_path, config, target)
    assert failed.returncode != 0
    assert not out.exists() and not list(out.parent.glob("dev.jsonl.part*"))
    log = (tmp_path / "run" / "results" / "xor" / "logs" / "download.xor_retrieve.dev.log").read_text()
    assert "error: xor_retrieve/dev.jsonl: downloaded" in log and "the file was removed" in log, log


def test_download_rule_checks_a_pinned_sha256(server, tmp_path):
    """A sha256 pinned in the config (data.sha256) is checked on the first download already."""
    server.files["/c.tsv"] = b"id\ttext\ttitle\n1\tsome text\tTitle\n"
    config = _paper_config_with(tmp_path, {"corpus/xor_retrieve.tsv": server.url("/c.tsv")},
                                {"corpus/xor_retrieve.tsv": "0" * 64})
    target = "results/xor/data/corpus/xor_retrieve.tsv"
    failed = _snakemake(tmp_path, config, target)
    assert failed.returncode != 0 and not (tmp_path / "run" / target).exists()
    log = (tmp_path / "run" / "results" / "xor" / "logs" / "download.corpus.xor_retrieve.log").read_text()
    assert "does not match the sha256 pinned in the config" in log, log
    assert not (tmp_path / "run" / "results" / "xor" / "data" / "MANIFEST.json").exists()


def test_jobs_run_offline_from_the_local_model_cache(tmp_path):
    """Every job of the paper configuration sees HF_HUB_OFFLINE=1 (only fetch_model goes online)."""
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(f"include: {str(REPO / 'Snakefile')!r}\n\n"
                       "rule job_environment:\n    output: 'env.txt'\n    shell: 'env > {output}'\n")
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(wrapper), "--directory", str(tmp_path), "--configfile",
         str(REPO / "config.paper.yaml"), "--cores", "1", "env.txt"],
        capture_output=True, text=True, cwd=REPO, timeout=600, env={k: v for k, v in os.environ.items()
                                                                      if not k.startswith(("HF_", "TRANSFORMERS_"))},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    env = dict(line.split("=", 1) for line in (tmp_path / "env.txt").read_text().splitlines() if "=" in line)
    assert env.get("HF_HUB_OFFLINE") == "1" and env.get("TRANSFORMERS_OFFLINE") == "1"
    # fetch_model itself turns it off for its own process, before importing huggingface_hub
    source = (REPO / "umr" / "download.py").read_text()
    assert source.index('os.environ["HF_HUB_OFFLINE"] = "0"') < source.index("from huggingface_hub import")


# -- hub models from a pre-populated Hugging Face cache (hub_cache: offline clusters) ------------
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(root: Path, repo_id: str = "org/model", files: dict[str, bytes] | None = None,
               commit: str = COMMIT, ref: str | None = "main") -> Path:
    """A cache laid out as huggingface_hub leaves it: refs/<ref>, snapshots/<commit>/* -> ../../blobs/<hash>."""
    files = files if files is not None else {"config.json": b'{"model_type": "bert"}', "vocab.txt": b"[PAD]\n[UNK]\n",
                                             "model.safetensors": b"weights", "pytorch_model.bin": b"old weights",
                                             "tf_model.h5": b"tf", "onnx/model.onnx": b"onnx"}
    repo = root / f"models--{repo_id.replace('/', '--')}"
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return root


def _no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the hub-cache route must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_model_from_hub_cache_resolves_the_ref_and_copies_files_offline(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    cache = _hub_cache(tmp_path / "cache")
    out = tmp_path / "models" / "model"
    download.fetch_model("org/model", out, "main", hub_cache=cache)
    # blobs copied (not links into the cache); other frameworks' weights and the .bin beside safetensors skipped
    assert sorted(p.name for p in out.iterdir()) == ["UMR_SOURCE.json", "config.json", "model.safetensors", "vocab.txt"]
    assert not any(p.is_symlink() for p in out.iterdir())
    assert (out / "model.safetensors").read_bytes() == b"weights"
    source = json.loads((out / "UMR_SOURCE.json").read_text())
    assert source["commit"] == COMMIT and source["revision"] == "main" and source["repo_id"] == "org/model"
    assert source["source"] == f"hub-cache:{cache.resolve()}"
    assert source["files"] == ["config.json", "model.safetensors", "vocab.txt"]
    assert not out.with_name("model.part").exists()


def test_model_from_hub_cache_accepts_a_commit_and_the_directory_above_hub(tmp_path, monkeypatch):
    """A commit needs no ref; ~/.cache/huggingface (the parent of hub/) works as well as hub/ itself."""
    _no_network(monkeypatch)
    _hub_cache(tmp_path / "huggingface" / "hub", ref=None, files={"config.json": b"{}", "pytorch_model.bin": b"w"})
    out = tmp_path / "model"
    download.fetch_model("org/model", out, COMMIT, hub_cache=tmp_path / "huggingface")
    assert sorted(p.name for p in out.iterdir()) == ["UMR_SOURCE.json", "config.json", "pytorch_model.bin"]
    assert json.loads((out / "UMR_SOURCE.json").read_text())["commit"] == COMMIT


@pytest.mark.parametrize("damage, message", [
    ("no repo", "no models--org--model/"),
    ("no ref", "no ref 'main' (the cache has refs: v1)"),
    ("no snapshot", f"no snapshot for commit '{COMMIT}'"),
    ("no config.json", "has no config.json"),
    ("broken link", "vocab.txt of snapshot"),
])
def test_model_from_hub_cache_failures_are_one_line_and_leave_nothing(damage, message, tmp_path, monkeypatch):
    _no_network(monkeypatch)
    cache = tmp_path / "cache"
    cache.mkdir()
    if damage != "no repo":
        _hub_cache(cache, ref="v1" if damage == "no ref" else "main",
                   files={"vocab.txt": b"x"} if damage == "no config.json" else None)
    repo = cache / "models--org--model"
    if damage == "no snapshot":
        shutil.rmtree(repo / "snapshots")
    if damage == "broken link":
        (repo / "blobs" / hashlib.sha256(b"[PAD]\n[UNK]\n").hexdigest()).unlink()
    out = tmp_path / "models" / "model"
    status, stderr = _download_cli("model", "--repo-id", "org/model", "--revision", "main", "--out", str(out),
                                   "--hub-cache", str(cache))
    assert status == 1
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], stderr
    assert f"org/model@main in hub cache {cache}" in lines[0]
    assert not out.exists() and not out.with_name("model.part").exists()


def _download_cli(*args: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "umr.download", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return done.returncode, done.stderr


def test_fetch_model_rule_copies_from_the_configured_hub_cache(tmp_path):
    """`hub_cache` in the config: the fetch_model rule passes --hub-cache (and so needs no network)."""
    import yaml

    cache = _hub_cache(tmp_path / "hub cache", repo_id="facebook/mcontriever",
                       files={"config.json": b"{}", "vocab.txt": b"[PAD]\n", "pytorch_model.bin": b"w"})
    config = yaml.safe_load((REPO / "config.paper.yaml").read_text())
    config["hub_cache"] = str(cache)
    configfile = tmp_path / "config.yaml"
    configfile.write_text(yaml.safe_dump(config))
    target = "results/xor/models/hub/mcontriever"
    done = _snakemake(tmp_path, configfile, target)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "run" / target
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".snakemake")) == [
        "UMR_SOURCE.json", "config.json", "pytorch_model.bin", "vocab.txt"]
    assert json.loads((out / "UMR_SOURCE.json").read_text())["source"] == f"hub-cache:{cache.resolve()}"
