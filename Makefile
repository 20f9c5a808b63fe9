# hostcp-studio: two commands.
#   make app   -> creates .venv if needed and launches the app on the built-in demo data
#   make test  -> creates .venv if needed (plus Debian's chromium for the browser test) and runs every test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8501
HOSTCP_HOME ?= $(CURDIR)/.hostcp
export HOSTCP_HOME

.PHONY: app test lint bench setup chromium

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# pyDVL, the reference the baseline tests check against: its numpy<2 pin would downgrade numpy,
	# and the two methods the tests use need only these two of its dependencies
	$(PY) -m pip install --quiet --no-deps pydvl==0.10.0 pyDeprecate==0.14.0 more-itertools==11.2.1
	touch $@

setup: $(VENV)/.installed

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the browser test..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

app: setup
	$(VENV)/bin/streamlit run app/streamlit_app.py --server.address 127.0.0.1 --server.port $(PORT)

test: setup chromium
	$(VENV)/bin/ruff check core app tests benchmarks
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/value_curves.py
	$(PY) benchmarks/mislabel.py
	$(PY) benchmarks/speed.py
	$(PY) benchmarks/cli_speed.py
