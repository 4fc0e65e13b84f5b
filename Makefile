# Two commands: `make demo` (install + run the main job) and `make test` (install test deps + run the tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# solc-js (compiles contracts/), OpenZeppelin and the Anvil binary (the embedded local chain), from npm.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed node_modules/.installed

demo: install
	bash scripts/demo.sh

test: install
	bash scripts/test.sh
