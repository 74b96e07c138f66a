# Set-up and the main jobs. `make demo` runs the main job on the built-in data; `make test` runs the tests.
# Both create .venv and install the pinned stack on first use (about 2–3 minutes), and install Debian's
# Hebrew fonts when run as root.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP_FLAGS := --ignore-requires-python --disable-pip-version-check -c requirements/constraints.txt
FONT_PACKAGES := culmus culmus-fancy fonts-ldco
APT_PACKAGES := $(FONT_PACKAGES) fontconfig

# What creating the venv and installing the stack need from Debian, printed as the packages that are missing:
# python3.11-venv (ensurepip) to create it; g++ and python3.11-dev (Python.h) because pyfarmhash 0.3.2, which TFDV
# 1.16 pins, ships no wheel and is compiled by pip. The packages of the Python that runs the check (python3-venv
# and python3-dev are the default Python's: 3.12 on Ubuntu 24.04). Arguments: "venv-exists", "farmhash-installed".
export BUILD_CHECK := import importlib.util, os, shutil, sys, sysconfig; \
  build = "farmhash-installed" not in sys.argv; python = "python%d.%d" % sys.version_info[:2]; \
  needs = [(python + "-venv", "venv-exists" in sys.argv or importlib.util.find_spec("ensurepip")), \
           ("g++", not build or shutil.which("g++")), \
           (python + "-dev", not build or os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))]; \
  print(" ".join(package for package, ok in needs if not ok))

# One step at a time, under make -j too: demo's server starts after its pipeline has pushed, and the venv's and the
# fonts' apt-get installs do not race for dpkg's lock.
.NOTPARALLEL:

.PHONY: demo test test-fast venv fonts browser pipeline serve retrain monitor clean-outputs help

help:
	@echo "make demo   generate the default data, run the pipeline, push a blessed model, then serve it (make serve)"
	@echo "make test   run the test suite"
	@echo "make test-fast  the suite without the tests marked slow (pipeline runs, browser, load)"
	@echo "make venv   create .venv with the pinned stack"
	@echo "make fonts  install Debian's Hebrew fonts (as root)"
	@echo "make browser  install Debian's Chromium for the browser tests (as root)"
	@echo "make pipeline  run the pipeline only (ARGS=\"...\" passes local_runner.py flags)"
	@echo "make serve  start the embedded model server and the web client on the pushed model"
	@echo "make retrain  run the pipeline again with the web client's feedback (confirmations and corrections)"
	@echo "make monitor  report drift, confidence and live accuracy of the served model (outputs/monitor/report.html)"
	@echo "make clean-outputs  remove pipeline outputs, request logs, pushed models and generated letters (the feedback store, \$$LETTERS_FEEDBACK_DIR or outputs/feedback, stays)"

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { \
	  echo "error: Python 3.11 is needed ($(PYTHON) is $$($(PYTHON) --version 2>&1)); set PYTHON=python3.11"; exit 1; }
	@$(PY) -m pip --version >/dev/null 2>&1 || rm -rf $(VENV)   # none yet, or left without pip by a failed try
	@missing=$$($(PYTHON) -c "$$BUILD_CHECK" "$$(test -x $(PY) && echo venv-exists)" \
	                          "$$($(PY) -c 'import farmhash' 2>/dev/null && echo farmhash-installed)"); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing what the install needs: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null || exit 1; \
	  else echo "error: the install needs Debian's $$missing: sudo apt-get install $$missing"; exit 1; fi; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(PIP_FLAGS) pip setuptools wheel
	PIP_CONSTRAINT=$(CURDIR)/requirements/constraints.txt $(PY) -m pip install -q $(PIP_FLAGS) -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

fonts:
	@if dpkg -s $(FONT_PACKAGES) >/dev/null 2>&1; then \
	  echo "Hebrew fonts: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's Hebrew fonts ($(FONT_PACKAGES))"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
	  echo "Hebrew fonts are missing: run 'sudo apt-get install $(FONT_PACKAGES)' (the generated data needs them)"; \
	fi

browser:
	@if [ -x /usr/bin/chromium ]; then echo "Chromium: installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "Installing Debian's chromium (browser tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "Chromium is missing: 'sudo apt-get install chromium chromium-driver' (browser tests are skipped without it)"; fi

pipeline: venv fonts
	$(PY) local_runner.py $(ARGS)

serve: venv
	$(PY) -m pipeline.serve_demo

retrain: venv fonts
	$(PY) local_runner.py --feedback-dir "$${LETTERS_FEEDBACK_DIR:-outputs/feedback}" $(ARGS)

monitor: venv
	$(PY) -m pipeline.monitor $(ARGS)

demo: pipeline serve

# Two pytest workers (pytest-xdist); tests that share a fixture stay on one worker (tests/conftest.py groups them).
# TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

test: venv fonts
	$(PY) -m pytest $(PARALLEL) $(PYTEST_ARGS)

test-fast: venv fonts
	$(PY) -m pytest -m "not slow" $(PARALLEL) $(PYTEST_ARGS)

clean-outputs:  # pipeline outputs, request logs, pushed models and their label config, generated letters; not the users' feedback
	@store="$${LETTERS_FEEDBACK_DIR:-outputs/feedback}"; \
	case "$$store" in "~"*) user="$${store%%/*}"; user="$${user#\~}"; \
	  home="$$HOME"; [ -z "$$user" ] || home=$$(getent passwd "$$user" | cut -d: -f6); \
	  [ -z "$$home" ] || store="$$home$${store#\~$$user}";; esac; \
	keep=$$(realpath -m "$$store"); \
	if [ "$$(realpath -m outputs)" = "$$keep" ]; then echo "kept outputs/: it is the feedback store ($$store)"; else \
	for entry in outputs/* outputs/.[!.]*; do \
	  [ -e "$$entry" ] || continue; \
	  case "$$keep/" in "$$(realpath -m "$$entry")/"*) echo "kept $$entry (it holds the feedback store $$keep: the users' confirmations and corrections)"; continue;; esac; \
	  if find "$$entry" -name feedback.sqlite -print -quit 2>/dev/null | grep -q .; then \
	    echo "kept $$entry (it holds a feedback store: the users' confirmations and corrections; rm -rf it yourself)"; continue; fi; \
	  rm -rf "$$entry"; \
	done; fi
	rm -rf serving/models/letters serving/models/models.config serving/models/models.config.history.json \
	  serving/models/models.config.lock data/generated
