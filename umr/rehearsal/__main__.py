"""`python -m umr.rehearsal`: the paper run rehearsed on a CPU (see umr.rehearsal.run)."""

from umr.io import run_cli
from umr.rehearsal.run import _main, _parser

if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
