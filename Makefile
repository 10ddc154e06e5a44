# The two commands of the README's quick start. Each sets up .venv first when needed.
.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/cai models pull smollm2-135m-instruct
	.venv/bin/cai run examples/quickstart.yaml

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/run_all.py
