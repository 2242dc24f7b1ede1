# Without Docker: `make serve` does what `docker compose up` does, in a virtualenv.
#   install into .venv -> train a checkpoint if there is none -> serve it on http://127.0.0.1:8000
# Offline with no local CIFAR-10, the trainer stops and says where to put the data (or ALEXNET_DATA_DIR).
#
#   make serve                      # everything; later runs skip the install and the training
#   make serve PORT=9000 HOST=0.0.0.0
#   make serve CHECKPOINT=path/to/your.safetensors   # serve your own checkpoint (never retrained)
#   make docker-lint                # hadolint + docker compose config, as CI runs them
#   make container-smoke            # build and run the image with podman (root, minutes; see README)
#   make audit                      # known vulnerabilities in what .venv has installed (pip-audit; needs pypi.org)

PYTHON ?= python3
VENV ?= .venv
# The checkpoint `make serve` trains when it is missing. A CHECKPOINT you name is yours: served, never trained
# (a typo stops with a message instead of starting a training run at that path).
TRAINED_CHECKPOINT ?= checkpoints/alexnet-cifar10.safetensors
CHECKPOINT ?= $(TRAINED_CHECKPOINT)
HOST ?= 127.0.0.1
PORT ?= 8000
# What a CPU trains when there is no GPU: the CPU stand-in recipe, a short run to have something to serve, not
# the real model (as in docker-compose.cpu.yml: 5-8.5 minutes and 41% test accuracy on a 2-core machine). The
# checkpoint records the recipe; the service's log, /health and /model say it is a stand-in.
CPU_TRAIN_ARGS ?= --recipe cpu

BIN := $(VENV)/bin

.PHONY: serve install checkpoint docker-lint container-smoke audit

serve: $(CHECKPOINT)
	@echo "serve: $(CHECKPOINT) on http://$(HOST):$(PORT) (docs at /docs)"
	$(BIN)/alexnet-serve --checkpoint $(CHECKPOINT) --host $(HOST) --port $(PORT)

install: $(VENV)/.installed

# Re-install only when pyproject.toml changes; the stamp file records the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e .
	touch $@

checkpoint: $(CHECKPOINT)

ifneq ($(CHECKPOINT),$(TRAINED_CHECKPOINT))
$(CHECKPOINT):
	@echo "serve: no checkpoint at $@: a checkpoint you name is served, never trained (make serve alone trains $(TRAINED_CHECKPOINT))" >&2; exit 1
else
# Built only when the file is missing. Order-only on install: a re-install never triggers training.
# --resume: an interrupted run goes on from its last finished epoch (with no state file it starts afresh).
$(CHECKPOINT): | $(VENV)/.installed
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		echo "train: no checkpoint at $@; a GPU is here: training the default recipe."; \
		device_args="--device cuda"; \
	else \
		echo "train: no checkpoint at $@ and no GPU here."; \
		echo "train: running a SHORT CPU run ($(CPU_TRAIN_ARGS)) so there is something to serve; its accuracy is low."; \
		echo "train: for the full recipe run:  $(BIN)/alexnet-train --output $@  (hours on a CPU; see README)"; \
		device_args="--device cpu $(CPU_TRAIN_ARGS)"; \
	fi; \
	$(BIN)/alexnet-train --output $@ --resume $$device_args
endif

docker-lint:
	scripts/lint_docker.sh

container-smoke:
	verification/container_smoke.sh

# pip-audit checks every installed version against PyPI's advisories (the OSV data). It runs from a venv of its
# own inside $(VENV), so it never changes the service's packages; --strict fails when any package could not be
# checked (no network, say) instead of reporting "no known vulnerabilities" about nothing.
AUDIT_VENV ?= $(VENV)/audit
audit: | $(VENV)/.installed
	test -x $(AUDIT_VENV)/bin/pip-audit || { $(PYTHON) -m venv $(AUDIT_VENV) && $(AUDIT_VENV)/bin/pip install -q pip-audit; }
	$(BIN)/pip freeze --exclude-editable >$(AUDIT_VENV)/installed.txt
	$(AUDIT_VENV)/bin/pip-audit --strict --no-deps --disable-pip -r $(AUDIT_VENV)/installed.txt
