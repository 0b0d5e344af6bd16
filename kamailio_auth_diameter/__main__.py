"""``python3 -m kamailio_auth_diameter handler-path``: the file app_python3 must load."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kamailio_auth_diameter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("handler-path", help='print the PATH for modparam("app_python3", "load", PATH)')
    parser.parse_args(argv)
    print(Path(__file__).resolve().parent / "kamailio" / "handler.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
