# Without Docker: `make serve` does what `docker compose up` does, in a virtualenv.
#   install into .venv -> train a checkpoint if there is none -> serve it on http://127.0.0.1:8000
#   (without a GPU: a first stand-in in minutes, served while a better one trains in the background)
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
# The checkpoints `make serve` trains when there is none: the real model on a GPU, and without one a CPU
# stand-in under a name of its own, so a later `make serve` on a GPU in the same clone trains the real model
# instead of serving the stand-in. Without a GPU the real model is served when it is there (copied from a GPU
# host, say). A CHECKPOINT you name is yours: served, never trained (a typo stops with a message).
TRAINED_CHECKPOINT ?= checkpoints/alexnet-cifar10.safetensors
STAND_IN_CHECKPOINT ?= checkpoints/alexnet-cifar10-cpu-stand-in.safetensors
HOST ?= 127.0.0.1
PORT ?= 8000
# What a CPU trains when there is no GPU, as docker-compose.cpu.yml does (times and accuracy: docs/training.md):
# first a FIRST stand-in, about a minute of training, served at once; then, in the background while it serves,
# the CPU stand-in recipe, sized to a time budget measured here (7 minutes of training), which replaces it in the
# same file; the service polls the file and takes it without a restart. Neither is the real model: the
# checkpoint records the recipe, and the service's log, /health and /model say it is a stand-in.
FIRST_TRAIN_ARGS ?= --recipe cpu-first
CPU_TRAIN_ARGS ?= --recipe cpu

BIN := $(VENV)/bin

.PHONY: serve install checkpoint _serve _checkpoint docker-lint container-smoke audit

# Whether the installed torch sees a GPU (a command: exit status 0 when it does).
HAS_GPU ?= $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"
# The checkpoint a plain `make serve` serves: the real model on a GPU or when it exists, else the stand-in. A
# recursive make, so `make -n serve` still shows what would run.
CHOSEN = $$(if $(HAS_GPU) || test -f $(TRAINED_CHECKPOINT); then echo $(TRAINED_CHECKPOINT); \
	else echo $(STAND_IN_CHECKPOINT); fi)

ifdef CHECKPOINT
serve: checkpoint
	@echo "serve: $(CHECKPOINT) on http://$(HOST):$(PORT) (docs at /docs)"
	$(BIN)/alexnet-serve --checkpoint $(CHECKPOINT) --host $(HOST) --port $(PORT)

checkpoint: | $(VENV)/.installed
	@test -f $(CHECKPOINT) || { echo "serve: no checkpoint at $(CHECKPOINT): a checkpoint you name is served, never trained (make serve alone trains one)" >&2; exit 1; }
else
serve checkpoint: | $(VENV)/.installed
	@$(MAKE) --no-print-directory _$@ SERVED=$(CHOSEN)
endif

install: $(VENV)/.installed

# Re-install only when pyproject.toml changes; the stamp file records the last install.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e .
	touch $@

# Without a GPU the stand-in is served while its better run trains in the background (only over a first
# stand-in: scripts/train_if_missing.sh); Ctrl-C stops both, and the next `make serve` resumes the training.
_serve: $(SERVED)
	@echo "serve: $(SERVED) on http://$(HOST):$(PORT) (docs at /docs)"
ifeq ($(SERVED),$(STAND_IN_CHECKPOINT))
	PATH="$(BIN):$$PATH" scripts/serve_while_training.sh $(SERVED) $(HOST) $(PORT) --device cpu $(CPU_TRAIN_ARGS)
else
	$(BIN)/alexnet-serve --checkpoint $(SERVED) --host $(HOST) --port $(PORT)
endif

# `make checkpoint` without a GPU: the first stand-in, then its replacement, in the foreground.
_checkpoint: $(SERVED)
ifeq ($(SERVED),$(STAND_IN_CHECKPOINT))
	ALEXNET_CHECKPOINT=$(SERVED) PATH="$(BIN):$$PATH" scripts/train_if_missing.sh --device cpu $(CPU_TRAIN_ARGS)
endif

# Built only when the file is missing. Order-only on install: a re-install never triggers training.
# --resume: an interrupted run goes on from its last finished epoch (with no state file it starts afresh);
# --stale-state restart: a state file of other settings (a recipe changed since) is set aside, not a stop.
$(TRAINED_CHECKPOINT): | $(VENV)/.installed
	@echo "train: no checkpoint at $@; a GPU is here: training the default recipe."
	$(BIN)/alexnet-train --output $@ --resume --stale-state restart --device cuda

$(STAND_IN_CHECKPOINT): | $(VENV)/.installed
	@echo "train: no GPU here and no $(TRAINED_CHECKPOINT)."
	@echo "train: a FIRST stand-in ($(FIRST_TRAIN_ARGS), about a minute of training) so there is something to serve within minutes;"
	@echo "train: then a better one ($(CPU_TRAIN_ARGS), 7 minutes of training) trains in the background and the service takes it, no restart."
	@echo "train: both are saved as $@; a GPU host trains the real model as $(TRAINED_CHECKPOINT)."
	@echo "train: for the full recipe on this CPU run:  $(BIN)/alexnet-train --output $(TRAINED_CHECKPOINT)  (hours; see README)"
	$(BIN)/alexnet-train --output $@ --resume --stale-state restart --device cpu $(FIRST_TRAIN_ARGS)

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
