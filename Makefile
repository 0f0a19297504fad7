# The two commands of README.md. Both create .venv and install what they need on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bench test walk

# torch==2.13.0 is pinned here (a CPU build these machines install from local disk); the package itself accepts a
# range, so a GPU box keeps its own CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# A figure whose interval straddles its floor is measured again in fresh processes (up to 4 times) rather than reported
# inconclusive: on a VM whose processes differ by 15-25%, one LoadGen run's interval is about +-50%, and three runs'
# spread (Student t at 2 degrees of freedom: 4.3) can still straddle a floor 2x away.
bench: $(VENV)/.installed
	$(BIN)/pytest suites --system=cpu --rerun-inconclusive=4

# --timeout (pytest-timeout): a test that hangs (an engine that never answers) fails after 10 minutes, 12 times the
# slowest test's time here, instead of holding CI to its own limit.
test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest tests -m "not walk" --timeout=600

# The walk of tests/test_quality_reach.py: every shipped real-preset case reaches its quality target (about an hour
# on 2 cores: outside `make test` and CI, run before changing a workload or a shipped batch).
walk: $(VENV)/.installed
	$(BIN)/pytest tests -m walk -n 2
