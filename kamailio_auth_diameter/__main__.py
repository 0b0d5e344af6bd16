"""``python3 -m kamailio_auth_diameter``: the handler path, migrating a C-module cfg, checks.

``handler-path`` prints the file app_python3 must load; ``migrate-cfg`` rewrites a
cfg written for the C module auth_diameter; ``check`` checks something without
starting Kamailio, one mode per option (``--cfg FILE``: the settings of a cfg file),
so that more modes can sit beside it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import migrate
from .kamailio import cfgcheck, cfgfile


def handler_path() -> Path:
    return Path(__file__).resolve().parent / "kamailio" / "handler.py"


def _handler_path(args: argparse.Namespace) -> int:
    print(handler_path())
    return 0


def _migrate_cfg(args: argparse.Namespace) -> int:
    """The rewritten cfg to -o (or stdout), what changed to stderr; 1 and nothing written if refused."""
    old = Path(args.old)
    try:
        text = old.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"migrate-cfg: cannot read {old}: {exc}", file=sys.stderr)
        return 1
    if args.output and os.path.exists(args.output) and os.path.samefile(args.output, old):
        print(f"migrate-cfg: -o {args.output} is the file being migrated; write to another one", file=sys.stderr)
        return 1
    try:
        result = migrate.migrate(text, args.handler or str(handler_path()))
    except migrate.MigrationError as exc:
        print(f"{old}:{exc.line}: cannot migrate: {exc.message}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(result.text, encoding="utf-8")
    else:
        sys.stdout.write(result.text)
    for line in migrate.report(result, str(old)):
        print(line, file=sys.stderr)
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.cfg is not None:
        return _check_cfg(args)
    print("check: say what to check: --cfg FILE", file=sys.stderr)
    return 2


def _check_cfg(args: argparse.Namespace) -> int:
    """Kamailio's start-up messages about the settings, then the settings in force; 1 if Kamailio would not start."""
    argv = ["-f", args.cfg]
    for define in args.define:
        argv += ["-A", define]
    path, defines = cfgfile.from_command_line(argv)  # read as the plugin reads Kamailio's own -A
    result = cfgcheck.check(path, defines, cfgcheck.read_text)
    if result.error:
        print(result.error, file=sys.stderr)
        print(f"check --cfg: Kamailio would not start with {path}", file=sys.stderr)
        return 1
    print("\n".join([*result.messages, *result.table()]))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kamailio_auth_diameter")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("handler-path", help='print the PATH for modparam("app_python3", "load", PATH)').set_defaults(
        run=_handler_path
    )
    m = sub.add_parser("migrate-cfg", help="rewrite a kamailio.cfg for the C module auth_diameter to use this plugin")
    m.add_argument("old", metavar="OLD.cfg")
    m.add_argument("-o", "--output", metavar="NEW.cfg", help="where to write the new cfg (default: stdout)")
    m.add_argument("--handler", metavar="PATH", help="the handler.py app_python3 loads (default: this installation's)")
    m.set_defaults(run=_migrate_cfg)
    c = sub.add_parser("check", help="check without starting Kamailio (--cfg: a cfg file's auth_diameter settings)")
    c.add_argument("--cfg", metavar="FILE", help="validate the auth_diameter.* settings of this kamailio.cfg offline")
    c.add_argument(
        "-A",
        "-D",
        "--define",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="with --cfg: a define, as kamailio -A gives it (repeatable)",
    )
    c.set_defaults(run=_check)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
