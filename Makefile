# codecomplete: the two commands are `make serve` and `make test`.
# Each creates .venv if it is missing and installs what it needs first.
#
#   make serve                 # the server on 127.0.0.1:5000 with the model shipped in models/
#   make test                  # the whole test suite (CPU; GPU tests skip without CUDA)
#   make lint | make bench | make tiny-model
#
# TORCH_SPEC picks torch: the CPU build by default. On a GPU machine bring your own torch
# (install it into .venv first, or run `make TORCH_SPEC= serve`).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= serve,train,data,dev
STAMP := $(VENV)/.installed-$(shell echo "$(EXTRAS) $(TORCH_SPEC)" | cksum | cut -d' ' -f1)
SERVE_ARGS ?=
# The serving benchmark runs on the bundled model (512-token context: the keystroke replay fits in it).
BENCH_ARGS ?= --model models/codecomplete-tiny-py --keystroke-tokens 400

.PHONY: venv serve test lint format bench tiny-model clean test-cluster

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

serve: venv
	$(BIN)/codecomplete serve $(SERVE_ARGS)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

format: venv
	$(BIN)/ruff format src tests scripts
	$(BIN)/ruff check --fix src tests scripts

bench: venv
	$(BIN)/python scripts/bench.py --out BENCHMARKS.md $(BENCH_ARGS)
	$(BIN)/python scripts/bench_train.py --append BENCHMARKS.md
	$(BIN)/python scripts/bench_curate.py --mb 20 --workers 1 --append BENCHMARKS.md

# Curation on Ray (a local cluster) and on a one-node Slurm, byte-identical to the local executor.
# Installs ray into .cluster/site (outside the project venv) and Debian's slurm-wlm + munge (root).
test-cluster: venv
	test -d .cluster/site/ray || $(BIN)/python -m pip install -q --no-deps --target .cluster/site ray
	test -d .cluster/site/jsonschema || $(BIN)/python -m pip install -q --target .cluster/site jsonschema
	bash scripts/cluster/slurm_one_node.sh
	PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONPATH="$(CURDIR)/.cluster/site:$(CURDIR)/src" CODECOMPLETE_CLUSTER_TESTS=1 \
		$(BIN)/python -m pytest -q -s -m cluster tests/data/test_cluster.py

tiny-model: venv
	bash scripts/make_tiny_model.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
