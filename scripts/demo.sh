#!/bin/sh
# The demo: reference server on SQLite + Kamailio with kamailio.cfg.example + sipp.
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
