# `make run` and `make test` are the two commands a newcomer needs (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: venv run test lint format bench clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m bot migrate
	$(PY) -m bot demo --if-empty
	@echo
	@echo "Try the bot without WeChat: in another terminal, run"
	@echo "    $(PY) -m bot chat --openid o_demo_member_01"
	@echo
	$(PY) -m bot serve

# Two workers, a test file each at a time (pytest-xdist): while one waits on a server, a
# browser or a child process, the other runs; about 14 minutes instead of 35 on two cores.
test: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

BENCH_STAMP := $(VENV)/.bench-$(shell cksum bench/requirements.txt | cut -d' ' -f1)

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(PY) -m pip install --quiet -r bench/requirements.txt
	rm -f $(VENV)/.bench-*
	touch $(BENCH_STAMP)

# The quick benchmarks (about 5½ minutes); bench/README.md lists the long ones and the figures.
bench: $(BENCH_STAMP)
	$(PY) bench/webhook.py --mode plain --requests 20000 --concurrency 16
	$(PY) bench/webhook.py --mode safe --requests 20000 --concurrency 16
	$(PY) bench/callbacks.py --events 30000 --concurrency 256 --warmup 0
	$(PY) bench/peers.py

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
