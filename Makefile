# Two commands do everything on a fresh machine (see README.md):
#   make demo   set up .venv/ (first time: ~10 min, mostly building mmcv) and run the transfer demo
#   make test   set up .venv/ and run the test suite
PY := .venv/bin/python

.PHONY: setup demo test
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py $(DEMO_ARGS)

test: setup
	$(PY) -m pytest tests -q $(TEST_ARGS)
