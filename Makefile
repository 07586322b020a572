# `make predict FILE=song.mp3` and `make test` each set up .venv on demand (about 1-2 minutes
# the first time: torch with its CUDA libraries is a large download) and then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: predict test

$(BIN)/mgc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

predict: $(BIN)/mgc
	@test -n "$(FILE)" || { echo 'usage: make predict FILE=song.mp3 (a file or a folder)'; exit 2; }
	$(BIN)/mgc predict "$(FILE)"

test: $(BIN)/mgc
	$(BIN)/python -m pytest -q
