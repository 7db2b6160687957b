# Two entry points: `make demo` (the main job on the built-in digits data) and `make test`.
# Both create .venv first if it is missing: current CPython (3.12 preferred), numpy 2, current torch,
# plus the managed Lava runtime in .venv/lava-runtime (Python 3.10, lava-nc 0.10, lava-dl 0.6).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
RUN   ?= runs/digits-mlp

.PHONY: demo test venv bench-deps clean

demo: $(VENV)/.installed
	$(PY) -m spikeport pipeline --preset digits-mlp --out $(RUN)

test: $(VENV)/.installed
	$(PY) -m pytest -q

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/make-venv.sh
	bash scripts/make-venv.sh $(VENV)
	touch $@

# Peers for the benchmarks at their current releases, installed the way their users install them.
bench-deps: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench]"

clean:
	rm -rf $(VENV) runs
