# Two entry points: `make quickstart` (install + run the quickstart notebook) and `make test` (everything,
# what CI runs); `make test-fast` is the edit loop (no notebooks, browser or multi-process runs).
# CPU machines use constraints/cpu.txt (keeps torch on the CPU wheel); with your own CUDA build of
# torch installed, run `make install CONSTRAINTS=` to leave it alone.
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints/cpu.txt
ARGS ?=
PYTEST_ARGS ?=
BIN := $(VENV)/bin

.PHONY: install quickstart test test-fast browser gpu-check

install: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	PIP_CONSTRAINT=$(CONSTRAINTS) $(BIN)/pip install --progress-bar off -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ftlib)"
	touch $@

quickstart: install
	$(BIN)/ftlib run notebooks/00_quickstart.ipynb $(ARGS)

# the test suite runs notebook kernels and processes beside pytest's own: OpenMP threads that sleep
# when idle instead of spinning keep them from slowing each other down
test test-fast: export OMP_WAIT_POLICY ?= PASSIVE

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not notebooks and not slow and not browser" $(PYTEST_ARGS)

# the GPU acceptance script (one CUDA GPU; DDP checks with two or more): PASS/FAIL rows and a table of figures
gpu-check: install
	PY=$(BIN)/python bash bench/gpu_check.sh

# tests/test_browser.py drives Debian's Chromium through playwright (which never downloads a browser)
browser:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }
