# One command to set up and run, one to set up and test; both work offline from the package registries
# and redo nothing on a second run.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench browser postgres

setup: $(STAMP)

# torch first: 2.13.0 is the CPU wheel on disk; any other version would pull GBs of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/labelbot demo

# The playground's browser tests drive Debian's chromium headless through Playwright (which cannot
# download its own browser offline); the emoji font only makes the screenshots faithful.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	test -x /usr/bin/chromium || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium fonts-noto-color-emoji)

# The PostgreSQL pass runs Debian's server binaries in a throwaway cluster (.ci/with-postgres).
postgres:
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends postgresql)

# The whole suite twice: on SQLite, then on PostgreSQL.
test: setup browser postgres
	$(VENV)/bin/ruff check .
	HF_HUB_OFFLINE=1 LABELBOT_REQUIRE_BROWSER=1 $(VENV)/bin/pytest -q
	HF_HUB_OFFLINE=1 LABELBOT_REQUIRE_BROWSER=1 .ci/with-postgres $(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/speed.py
