# The two commands of the README's quick start. Each sets up .venv first when needed.
.PHONY: setup demo test lint bench browser

setup:
	@bash scripts/setup.sh

demo: setup
	.venv/bin/cai models pull smollm2-135m-instruct
	.venv/bin/cai run examples/quickstart.yaml

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -n 2 --durations=15

lint: setup
	.venv/bin/ruff check .

bench: setup
	.venv/bin/python bench/run_all.py

# The system's headless Chromium and chromedriver, for the labelling page's browser test (which
# says at the end of `make test` when it was skipped for want of them). Needs apt and root/sudo.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
	  echo "chromium and chromedriver are installed"; \
	else \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; \
	fi
