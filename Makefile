# Every target installs what it needs into .venv first, so each works on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAMPLE ?= samples/chelsea.png

.PHONY: install demo test bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A stamp per extra, remade when pyproject.toml changes.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $@

# Byte-compile up front: where PYTHONDONTWRITEBYTECODE is set, every kmq run would otherwise recompile it.
install: $(VENV)/.installed-test
	@$(BIN)/python -m compileall -q kmq

demo: install
	@mkdir -p demo
	$(BIN)/kmq compress $(SAMPLE) -k 16 -o demo/sample.kmq -f
	$(BIN)/kmq decompress demo/sample.kmq -o demo/sample.kmq.png -f
	$(BIN)/kmq stats demo/sample.kmq
	@echo "demo: wrote demo/sample.kmq and demo/sample.kmq.png"

# Two workers: the machine the suite must pass on in 5 minutes has 2 cores (TEST_JOBS=0 runs in one process).
TEST_JOBS ?= 2
test: install
	$(BIN)/python -m pytest -n $(TEST_JOBS)

bench: $(VENV)/.installed-bench
	@mkdir -p bench/results
	$(BIN)/python bench/speed.py
	$(BIN)/python bench/codecs.py
	$(BIN)/python bench/rd.py
	$(BIN)/python bench/palette.py
	$(BIN)/python bench/rdo.py
	$(BIN)/python bench/dither.py
	$(BIN)/python bench/targets.py
	cat bench/results/speed.md bench/results/codecs.md bench/results/rd.md bench/results/palette.md bench/results/rdo.md bench/results/dither.md bench/results/targets.md > bench/RESULTS.md
	@echo "bench: wrote bench/RESULTS.md"

# The decoder against FUZZ_CASES mutated .kmq files on 2 cores; exits non-zero on any failure (tools/fuzz.py).
FUZZ_CASES ?= 100000
fuzz: install
	$(BIN)/python tools/fuzz.py -n $(FUZZ_CASES) --jobs 2

clean:
	rm -rf $(VENV) demo build *.egg-info .pytest_cache
