# Two commands a user needs (README): `make toy` and `make test`; `make ablations` adds the grids.
# Both create the virtual environment on first use; nothing is downloaded at run time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup toy ablations test lint rehearsal clean-toy

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the CPU build this machine and CI install from disk;
# an unpinned torch would pull a multi-GB CUDA build.
# envs/constraints.txt: the exact versions envs/*.yaml pin too (tests/test_envs.py checks them).
$(VENV)/.installed: pyproject.toml envs/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c envs/constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c envs/constraints.txt -e '.[test,bm25]'
	touch $@

# The method and its baselines (Snakemake's default target `all`).
toy: setup
	$(BIN)/snakemake --cores $(CORES)

# The ablation grids (Tables 4-6, the ablation table, the knob plots), reusing what `make toy` built.
ablations: setup
	$(BIN)/snakemake --cores $(CORES) ablations

test: setup
	$(BIN)/python -m pytest

# The paper run rehearsed on this CPU: config.paper.yaml + config.rehearsal.yaml (sizes only),
# real file formats and checkpoints, through `snakemake --profile slurm` on a single-node SLURM
# it starts (needs root or sudo); LOCAL=1 runs the same DAG without SLURM.
rehearsal: setup
	$(BIN)/python -m umr.rehearsal $(if $(LOCAL),--local --cores $(CORES))

lint: setup
	$(BIN)/snakemake --lint

clean-toy:
	rm -rf results/toy
