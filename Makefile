# nanobragg_cli -- every target creates the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
NB      = $(VENV)/bin/nanobragg
OUT    ?= out

.PHONY: venv demo test test-all bench bench-warm supervisor clean gpu-check

venv: $(VENV)/.installed

# torch==2.13.0 first: on the development machines it installs the CPU wheel from local disk;
# elsewhere give TORCH_INDEX=https://download.pytorch.org/whl/cpu for the CPU-only build (PyPI's
# default is the multi-GB CUDA build). See README "Quick start" and "CUDA".
TORCH_INDEX ?=
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: venv
	@mkdir -p $(OUT)/demo
	cd $(OUT)/demo && ../../$(NB) -cell 79.1 79.1 38.4 90 90 90 -misset 10 20 30 -default_F 100 \
	  -N 20 -mosaic 0.2 -mosaic_domains 4 -lambda 1 -distance 200 -detpixels 512 -pixel 0.1 \
	  -osc 0.5 -phisteps 4 -seed 1 -floatfile demo.bin -intfile demo.img -noisefile demo_noise.img \
	  -nopgm --png demo.png
	@echo "demo images written to $(OUT)/demo/: demo.bin (float32), demo.img and demo_noise.img (SMV), demo.png"

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

# The same set through the warm-start server (NANOBRAGG_SERVER=1): what repeated calls cost.
bench-warm: venv
	@mkdir -p $(OUT)
	$(NB) bench --server --markdown --json $(OUT)/bench_warm.json $(BENCH_ARGS)

# The supervisor command of the golden corpus (2463x2527 pixels, -phi 0 with 10 phi steps), run
# from the corpus folder in both modes; each run writes a parity bundle:
#   reports/supervisor/c-parity/<UTC>/  --c-parity: trace against nanoBragg.c's, the whole image
#                                       against float_full.npz
#   reports/supervisor/default/<UTC>/   default mode: trace against supervisor_spec (C with
#                                       -phi 1e-30) and against C's own trace (first divergence:
#                                       the phi=0 carryover), ROI against supervisor_spec
# Each whole-image render takes about a minute on 2 cores; SUPERVISOR_WINDOW="--window 621 748
# 975 1102" renders only the 128x128 ROI. Nothing is written into the corpus.
GOLDEN_DIR ?= $(or $(NB_GOLDEN_DIR),tests/golden)
SUPERVISOR_WINDOW ?=
SUPERVISOR_ARGS = -mat inputs/A.mat -hkl inputs/scaled.hkl -nonoise -nointerpolate -oversample 1 \
  -exposure 1 -flux 1e18 -beamsize 1.0 -spindle_axis -1 0 0 -Xbeam 217.742295 -Ybeam 213.907080 \
  -distance 231.274660 -lambda 0.976800 -pixel 0.172 -detpixels_x 2463 -detpixels_y 2527 \
  -odet_vector -0.000088 0.004914 -0.999988 -sdet_vector -0.005998 -0.999970 -0.004913 \
  -fdet_vector 0.999982 -0.005998 -0.000118 -pix0_vector_mm -216.336293 215.205512 -230.200866 \
  -beam_vector 0.00051387949 0.0 -0.99999986 -Na 36 -Nb 47 -Nc 29 -osc 0.1 -phi 0 -phisteps 10 \
  -detector_rotx 0 -detector_roty 0 -detector_rotz 0 -twotheta 0
SUPERVISOR_OUTPUTS = -floatfile float.bin -noprogress -nopgm -trace_pixel 685 1039

supervisor: venv
	@test -d "$(GOLDEN_DIR)/cases/supervisor" || { echo "make supervisor: no golden corpus at" \
	  "$(GOLDEN_DIR) (set NB_GOLDEN_DIR)" >&2; exit 2; }
	cd "$(GOLDEN_DIR)" && "$(abspath $(NB))" parity --c-parity $(SUPERVISOR_WINDOW) \
	  --out "$(CURDIR)/reports/supervisor/c-parity" \
	  --c-trace cases/supervisor/trace_685_1039.log --c-image cases/supervisor/float_full.npz \
	  -- $(SUPERVISOR_ARGS) $(SUPERVISOR_OUTPUTS)
	cd "$(GOLDEN_DIR)" && "$(abspath $(NB))" parity $(SUPERVISOR_WINDOW) \
	  --out "$(CURDIR)/reports/supervisor/default" \
	  --c-trace cases/supervisor_spec/trace_685_1039.log \
	  --c-trace cases/supervisor/trace_685_1039.log \
	  --c-image cases/supervisor_spec/float_roi.npy --c-image-origin 621 975 \
	  -- $(SUPERVISOR_ARGS) $(SUPERVISOR_OUTPUTS)

# On a CUDA machine: the CUDA-marked tests and `nanobragg bench --device cuda` (B1..B4, S1, S2,
# float64 and float32, 2 runs each), summed up in $(OUT)/gpu-check/gpu-check.json (about 5 minutes).
gpu-check: venv
	$(PY) -m nanobragg_cli.gpu_check $(OUT)/gpu-check
