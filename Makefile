# wa-keeper: `make demo` runs the whole local stack, `make test` the checks and tests.
# Both install what they need first (scripts/setup.sh, idempotent).
PROJECT ?= demo-wa-keeper
PYTEST_ARGS ?=
DEMO_ARGS ?=
VENV := .venv/bin

.PHONY: setup test lint unit demo clean

setup:
	@bash scripts/setup.sh

lint: setup
	$(VENV)/ruff check connector functions tests scripts bench
	$(VENV)/ruff format --check connector functions tests scripts bench
	$(VENV)/mypy connector functions tests
	PYTHONPATH=functions $(VENV)/lint-imports

test: lint
	GOOGLE_CLOUD_PROJECT=$(PROJECT) FUNCTIONS_DISCOVERY_TIMEOUT=120 scripts/in_own_group.sh scripts/firebase emulators:exec --project $(PROJECT) \
	  --only firestore,pubsub,functions \
	  "$(VENV)/python -m pytest -p no:cacheprovider -q $(PYTEST_ARGS)"

# Unit tests only (no emulators): the fast loop while coding.
unit: setup
	$(VENV)/python -m pytest -q tests/unit

# The local stack and a narrated fault script (wa-keeper demo); e.g. DEMO_ARGS="--accounts 3 --fast".
demo: setup
	$(VENV)/python -m connector demo $(DEMO_ARGS)

clean:
	rm -rf .venv functions/venv node_modules .cache
