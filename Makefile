# One entry point for every job. `make train` and `make test` are the two
# set-up commands in README.md: each creates .venv and installs everything first.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: setup train test test-fast stress lint book browser bubblewrap bench gpu clean

setup: $(STAMP)

# torch is pinned to the CPU wheel on local disk here; the package itself asks for torch>=2.4.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q "torch==2.13.0" -e ".[course,dev]"
	@# jsonschema's optional IRI format check (rfc3987-syntax, pulled in through jupyter-events) builds 38 parsers
	@# whenever nbformat is imported: about 1 s in every process that reads a notebook (each grading command and
	@# worker, nbgrader, the tests). Nothing in this course validates IRIs, so the venv goes without it.
	$(PIP) uninstall -y -q rfc3987-syntax lark
	touch $@

train: $(STAMP)
	$(VENV)/bin/gpipe train

# One pytest-xdist worker per core; the graded class and the built site each stay on one worker
# (tests/helpers/needs.py GROUP_FILES, tests/conftest.py's scheduler). WORKERS=0 runs the suite in this process.
WORKERS ?= auto
# The project's own modules are compiled once up front: where PYTHONDONTWRITEBYTECODE is set (these machines set
# it), every process the tests start (grading workers, commands, probes) would compile them again, about 0.35 s each.
test: $(STAMP) browser bubblewrap
	$(VENV)/bin/ruff check .
	$(PY) -m compileall -q -j 0 gpipe_core autograder
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -n $(WORKERS)

# The edit loop: ruff, then the engine and course unit tests, leaving out every test marked with a need
# (tests/helpers/needs.py: Chromium, the book build, the sandbox, torchrun ranks, the graded class, slow work).
FAST := not browser and not book and not sandbox and not distributed and not class and not slow
test-fast: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m compileall -q -j 0 gpipe_core autograder
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -m "$(FAST)" -n $(WORKERS)

# The whole suite three times from a clean clone of HEAD with two busy loops per core beside it (.ci/stress).
stress:
	bash .ci/stress

# The book's browser tests drive Debian's Chromium (Playwright's own browser download does not work here).
browser:
	@command -v chromium >/dev/null || { apt-get update -q && apt-get install -y -q chromium; }

# The grader runs every learner notebook inside Debian's bubblewrap sandbox (autograder/README.md).
bubblewrap:
	@command -v bwrap >/dev/null || { apt-get update -q && apt-get install -y -q bubblewrap; }

# The course site into _build/html, pages executed on gpipe_core (cached), warnings as errors.
book: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) book/build.py

# The benchmark table (not part of the tests): ratios measured side by side, JSON + plot in benchmarks/results/.
bench: $(STAMP)
	$(PY) -m benchmarks.run

# The GPU checks and every solution notebook run on the GPU (pass/fail per graded cell), on a machine with a GPU
# and its own torch: see benchmarks/gpu.sh ("make gpu" runs both parts, under 10 minutes).
gpu:
	bash benchmarks/gpu.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) _build .pytest_cache .ruff_cache
