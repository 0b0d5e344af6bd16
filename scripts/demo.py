"""The demo: our reference server on SQLite, Kamailio with kamailio.cfg.example, sipp as the UA.

Shows 401 -> 200 (REGISTER), 407 -> 200 (INVITE), a wrong password re-challenged, an
unknown user's 403, and a group check both ways. Everything runs on 127.0.0.1 ports
of its own and is stopped at the end. Run it with scripts/demo.sh.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness import ReferenceServer, example_kamailio, running, sipp

STEPS = (
    ("REGISTER alice (www_authorize): 401 then 200", "register_auth", {"auth_user": "alice", "password": "secret"}),
    (
        "INVITE alice -> carol (proxy_authorize): 407 then 200",
        "invite_auth_200",
        {"auth_user": "alice", "password": "secret", "service": "carol"},
    ),
    (
        "REGISTER alice with a wrong password: challenged again",
        "register_rechallenge",
        {"auth_user": "alice", "password": "wrong"},
    ),
    (
        "REGISTER mallory, unknown user: 403",
        "register_forbidden",
        {"user": "mallory", "auth_user": "mallory", "password": "guess"},
    ),
    (
        "INVITE alice -> voicemail, alice in group voicemail: 200",
        "invite_auth_200",
        {"auth_user": "alice", "password": "secret", "service": "voicemail"},
    ),
    (
        "INVITE bob -> voicemail, bob not in group voicemail: 403",
        "invite_auth_403",
        {"user": "bob", "auth_user": "bob", "password": "bobpw", "service": "voicemail"},
    ),
)


def exchange(run_dir: Path, scenario: str) -> list[str]:
    """Request and status lines, in order, from sipp's message trace, with the auth headers."""
    lines = []
    for log in sorted(run_dir.glob(f"{scenario}_*_messages.log")):
        text = log.read_text(errors="replace")
        for direction, message in re.findall(r"message (sent|received)[^\n]*\n\n(.*?)\n\n", text, re.S):
            first, *headers = message.splitlines()
            arrow = "UA -> Kamailio" if direction == "sent" else "UA <- Kamailio"
            lines.append(f"    {arrow}  {first.strip()}")
            for h in headers:
                if h.split(":", 1)[0].lower() in (
                    "www-authenticate",
                    "proxy-authenticate",
                    "authorization",
                    "proxy-authorization",
                ):
                    lines.append(f"                      {h.strip()[:110]}")
        log.unlink()
    return lines


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="auth-diameter-demo-") as tmp:
        tmp_path = Path(tmp)
        server = ReferenceServer(db=tmp_path / "users.db", log_path=tmp_path / "server.log")
        print(f"Reference server database (SQLite, HA1 only): {server.db}")
        for user in (("alice", "example.com", "secret"), ("bob", "example.com", "bobpw")):
            server.add_user(*user)
            print(f"  user add {user[0]} {user[1]}")
        server.add_group("alice", "voicemail")
        print("  group add alice voicemail")
        kamailio = example_kamailio(tmp_path / "kamailio", server.port)
        failures = 0
        with running(server, kamailio):
            print(
                f"Server on 127.0.0.1:{server.port}, Kamailio (kamailio.cfg.example) on 127.0.0.1:{kamailio.sip_port}"
            )
            for title, scenario, kw in STEPS:
                run_dir = tmp_path / "sipp"
                r = sipp(scenario, kamailio.sip_port, run_dir=run_dir, extra=("-trace_msg",), **kw)
                status = "ok" if r.returncode == 0 else "FAILED"
                failures += r.returncode != 0
                print(f"\n[{status}] {title}")
                print("\n".join(exchange(run_dir, scenario)))
                if r.returncode:
                    print(r.output)
        kamailio.assert_no_crash()
        print(f"\n{len(STEPS) - failures} of {len(STEPS)} flows behaved as expected.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
