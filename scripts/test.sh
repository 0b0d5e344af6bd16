#!/bin/sh
# The test command: install what the tests need, then run them all (unit, real
# Kamailio + sipp, C-module interop) and the linter.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
.venv/bin/ruff check kamailio_auth_diameter tests bench scripts
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
