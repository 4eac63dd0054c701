# The two commands of the README. Both do all the set-up first (idempotent, quick when done).
.PHONY: setup demo test bench docs lint

setup:
	./scripts/setup.sh

demo: setup
	./scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	./scripts/bench.sh

docs: setup
	.venv/bin/python scripts/gen_cli_docs.py > docs/cli.md
