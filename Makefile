# codecomplete: the two commands are `make serve` and `make test`.
# Each creates .venv if it is missing and installs what it needs first.
#
#   make serve                 # the server on 127.0.0.1:5000 with the model shipped in models/
#   make test                  # the whole test suite (CPU; GPU tests skip without CUDA; installs
#                              # Debian's chromium for the playground's browser test when root)
#   make lint | make bench | make tiny-model
#   make soak                  # SOAK_MINUTES (10) of 16 streaming clients, 30% dropping: RSS, latency, leaks
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

SOAK_MINUTES ?= 10
SOAK_ARGS ?= --clients 16 --disconnect 0.3

.PHONY: venv serve test lint format bench soak tiny-model clean browser

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(if $(TORCH_SPEC),$(BIN)/python -m pip install -q "$(TORCH_SPEC)")
	$(BIN)/python -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

serve: venv
	$(BIN)/codecomplete serve $(SERVE_ARGS)

test: venv browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The playground's browser test (tests/api/test_playground_browser.py) drives Debian's Chromium with
# Playwright (never `playwright install`: no download at test time). Installed here when missing and
# possible (root with apt-get); otherwise that test skips and says how to get it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing chromium (apt-get) for the playground's browser test"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q chromium >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || \
		echo "make: could not install chromium; the browser test will skip"; \
	else \
		echo "make: no chromium (apt-get install chromium as root); the browser test will skip"; \
	fi

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
	$(BIN)/python scripts/bench_editor.py --append BENCHMARKS.md

soak: venv
	$(BIN)/python scripts/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

tiny-model: venv
	bash scripts/make_tiny_model.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
