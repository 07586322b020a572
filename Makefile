# `make predict FILE=song.mp3` and `make test` each set up .venv on demand (about 1-2 minutes
# the first time: torch with its CUDA libraries is a large download) and then run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: predict test onnx

$(BIN)/mgc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

predict: $(BIN)/mgc
	@test -n "$(FILE)" || { echo 'usage: make predict FILE=song.mp3 (a file or a folder)'; exit 2; }
	$(BIN)/mgc predict "$(FILE)"

test: $(BIN)/mgc
	$(BIN)/python -m pytest -q

# The shipped weights' ONNX twins, exported from their .pt checkpoints (after any change to one:
# tests/test_onnx_engine.py fails while a twin is stale). Needs the exporter: pip install -e ".[onnx]".
onnx: $(BIN)/mgc
	for checkpoint in weights/*.pt; do $(BIN)/mgc export "$$checkpoint" --format onnx --out "$${checkpoint%.pt}.onnx" || exit 1; done
