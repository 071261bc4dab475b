# nanobragg_cli -- every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
NB      = $(VENV)/bin/nanobragg
OUT    ?= out

.PHONY: venv demo test test-all bench supervisor clean

venv: $(VENV)/.installed

# torch==2.13.0 first: on the development machines it installs the CPU wheel from local disk
# (an unpinned torch would pull a multi-GB CUDA build). See README "CUDA".
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	@mkdir -p $(OUT)/demo
	cd $(OUT)/demo && ../../$(NB) -cell 100 100 100 90 90 90 -default_F 100 -N 5 \
	  -lambda 1 -distance 100 -detpixels 256 -pixel 0.1 -mosaic 0.2 -mosaic_domains 5 \
	  -floatfile demo.bin -intfile demo.img -pgmfile demo.pgm -noisefile demo_noise.img -seed 1 \
	  -noprogress
	@echo "demo images written to $(OUT)/demo/ (demo.bin, demo.img, demo_noise.img, demo.pgm)"

test: venv
	$(PY) -m pytest

test-all: venv
	$(PY) -m pytest -m ''

clean:
	rm -rf $(OUT) .pytest_cache

# Benchmarks: fresh process per run, nanoBragg.c side by side when NB_C_BIN names its binary.
# Prints a Markdown table (docs/performance.md); e.g. make bench BENCH_ARGS="--set B1,B3 --threads 2"
BENCH_ARGS ?=
bench: venv
	@mkdir -p $(OUT)
	$(NB) bench --markdown --json $(OUT)/bench.json $(BENCH_ARGS)
