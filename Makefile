# Two entry points: `make demo` (the main job on the built-in digits data) and `make test`.
# Both create .venv first if it is missing: Python 3.10 (Lava's only version), numpy < 2, torch 2.3.x.
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

# Peers for the benchmarks, without letting them replace the environment's torch.
bench-deps: $(VENV)/.installed
	$(PY) -m pip install -q --no-deps snntorch spikingjelly

clean:
	rm -rf $(VENV) runs
