"""Short SLURM log directory names for deep lineage paths.

The SLURM executor plugin (snakemake-executor-plugin-slurm 2.x) writes each job's log to
`.snakemake/slurm_logs/rule_<rule>/<every wildcard value joined by "_">/<jobid>.log`: one
directory name holds the whole lineage path. A name over 255 bytes (NAME_MAX) fails the
submission ("[Errno 36] File name too long"). config.paper.yaml's iteration-2 "+ rerank" jobs
reach 275 bytes (dataset, task, two rr-/kd- pairs of ~100 bytes, the rerank tag, split,
language, chunk), and any configuration with three iterations passes 255 even with the
shortest tags. The plugin's maintainers keep the format (its issues #84 and #216), so the
workflow's main process replaces the plugin's name function with one that keeps short names
as they are and shortens long ones to their head and tail around a digest of the whole:
still unique per job, still readable where it matters (rule, dataset and task at the head;
rerank tag, split, language and chunk at the tail).
"""

from __future__ import annotations

import hashlib

NAME_LIMIT = 200  # bytes; NAME_MAX is 255, leaving room for the plugin's own suffixes


def short_name(text: str, limit: int = NAME_LIMIT) -> str:
    """`text` itself if it fits in `limit` UTF-8 bytes, else `<head>~<digest>~<tail>` of `limit` bytes at most."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    digest = hashlib.sha1(data).hexdigest()[:12]
    room = limit - len(digest) - 2
    head, tail = room // 3, room - room // 3  # the tail says more: rerank tag, split, language, chunk
    return (f"{data[:head].decode('utf-8', 'ignore')}~{digest}~"
            f"{data[len(data) - tail:].decode('utf-8', 'ignore')}")


def install() -> bool:
    """Make the SLURM plugin (if installed) name log directories with `short_name`; True if it did."""
    try:
        import snakemake_executor_plugin_slurm as plugin
        from snakemake_executor_plugin_slurm import utils
    except ImportError:
        return False
    if getattr(plugin.get_job_wildcards, "umr_short_name", False):
        return True
    original = utils.get_job_wildcards

    def get_job_wildcards(job) -> str:
        return short_name(original(job))

    get_job_wildcards.umr_short_name = True
    plugin.get_job_wildcards = get_job_wildcards
    return True
