# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv/ if needed, then run the self-training loop on its embedded default
#   make test   set up .venv/ if needed, then run the test suite
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow test-gpu clean

setup: $(STAMP)

# Re-installs when requirements.txt changes; the stamp is written only after pip succeeds.
$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python run.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(ARGS)

# Long CPU checks (marked slow: the research scripts' end-to-end smoke tests) run on purpose.
test-slow: $(STAMP)
	RUN_SLOW=1 $(VENV)/bin/python -m pytest -q -m slow $(ARGS)

# GPU checks run on purpose, on a machine with CUDA (they are skipped elsewhere).
test-gpu: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m gpu $(ARGS)

clean:
	rm -rf $(VENV)
