# The two commands of the README. Both do all the set-up first (idempotent, quick when done).
.PHONY: setup demo test check bench docs lint

setup:
	./scripts/setup.sh

demo: setup
	./scripts/demo.sh

test: setup
	.venv/bin/python -m pytest -q $(PYTEST_ARGS)

# The fast tier, no set-up: the tests that need neither the stack (PostgreSQL, the model server) nor a
# large local model (the markers are set in tests/conftest.py).
check:
	@test -x .venv/bin/python || { echo "no .venv here: run 'make setup' first" >&2; exit 1; }
	.venv/bin/python -m pytest -q -m "not stack and not models" $(PYTEST_ARGS)

bench: setup
	./scripts/bench.sh

docs: setup
	.venv/bin/python scripts/gen_cli_docs.py > docs/cli.md
