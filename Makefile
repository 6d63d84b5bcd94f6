# The two commands of the README: `make quickstart` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.vidlab-installed

.PHONY: setup quickstart test clean

# Setup: a venv that also sees the system's packages, so a machine that already has torch
# (e.g. a CUDA build) keeps it; otherwise the CPU build torch==2.13.0 is installed first,
# before anything that depends on torch can pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

setup: $(STAMP)

quickstart: $(STAMP)
	$(PY) -m vidlab.quickstart --notebook notebooks/01_quickstart.ipynb --out results/quickstart

test: $(STAMP)
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) results
