# minutes — set-up and the two jobs the README names: `make serve` and `make test`.
# Every target is idempotent: it installs only what is missing.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000

# Debian packages: TTS voices and text for the corpus builder, sox, the browser for the demo
# page tests, nginx for the replica test.
DEB_PACKAGES := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	fortunes fortunes-min bible-kjv bible-kjv-text wordnet-base dict-devil sox libsndfile1 \
	chromium chromium-driver nginx-light libportaudio2

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: serve test deps deb venv clean-venv

serve: deps
	$(BIN)/minutes serve --host $(HOST) --port $(PORT)

test: deps
	$(BIN)/python -m pytest

deps: deb venv

deb:
	@missing=""; for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# Reinstalled when pyproject.toml changes. The venv takes ~90 s and ~7 GB (torch's CUDA build
# runs on the CPU; see shared/DESIGN.md).
$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,peers,tts]'
	touch $@

clean-venv:
	rm -rf $(VENV)
