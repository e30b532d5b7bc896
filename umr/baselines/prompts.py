"""mGenQ's question-generation prompts, and how a prompt is named in a lineage tag.

Kept apart from `umr.baselines.mgenq` (which imports torch) because the plan reads
them when Snakemake parses the workflow. A prompt is either one of `TEMPLATES`, by
name, or a format string with ``{language}`` and ``{text}`` (and optionally
``{title}``); in a path it appears as its name, or as ``custom-<8 hex digits of
its sha256>`` (`template_key`), so that a different prompt is a different node.
"""

from __future__ import annotations

import hashlib
import re
import string

from umr.errors import UMRError

TEMPLATES: dict[str, str] = {
    # Default: instruction first (mT0's model-card style), so that truncating a long passage at
    # --max-input-length never cuts the instruction off.
    "instruction-first": "Write a question in {language} that this passage answers: {title} {text}",
    # xP3's question-generation prompts mostly put the instruction after the context.
    "passage-first": "{title} {text}\n\nWrite a question in {language} that the passage above answers.",
    # The UMR paper's instruction (§3.1), in the frame the reranker scores questions with.
    "umr-paper": "Passage:  {title} {text}. Based on the passage, please write a question in {language}.",
}
DEFAULT_TEMPLATE = "instruction-first"
TEMPLATE_NAME = r"[a-z][a-z0-9-]*"  # a name, or custom-<hash>, in a genq- tag
_PLACEHOLDERS = {"title", "text", "language"}


def resolve_template(template: str) -> str:
    """The format string of a template name of `TEMPLATES`, or `template` itself when it is a valid format string."""
    if template in TEMPLATES:
        return TEMPLATES[template]
    if "{" not in template:
        raise UMRError(f"template {template!r}: unknown template name; choose from {', '.join(TEMPLATES)} "
                       "or give a format string with {language} and {text}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as err:
        raise UMRError(f"template {template!r}: not a valid format string ({err})") from None
    if not fields <= _PLACEHOLDERS or not {"language", "text"} <= fields:
        raise UMRError(f"template {template!r}: placeholders must include {{language}} and {{text}} and be among "
                       f"{{title}}, {{text}}, {{language}}; found {', '.join(sorted(fields)) or 'none'}")
    return template


def template_key(template: str) -> str:
    """How a template appears in a lineage tag: its name, or custom-<sha256[:8]> of a format string."""
    resolve_template(template)  # a bad template is an error here, before any job
    if template in TEMPLATES:
        return template
    return "custom-" + hashlib.sha256(template.encode("utf-8")).hexdigest()[:8]


def template_for_key(key: str, configured: str) -> str:
    """The format string behind a tag's template key; a custom one must be the configured template."""
    if key in TEMPLATES:
        return TEMPLATES[key]
    if re.fullmatch(r"custom-[0-9a-f]{8}", key) and template_key(configured) == key:
        return resolve_template(configured)
    raise UMRError(f"template key {key!r}: not a template name ({', '.join(TEMPLATES)}) nor the hash of the "
                   "configured baselines.mgenq.template")
