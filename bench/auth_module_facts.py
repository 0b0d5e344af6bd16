"""What Kamailio's auth module accepts, behind bench/auth_module_handler.py (run by hand).

    .venv/bin/python bench/auth_module_facts.py

README ("Why not Kamailio's auth module") says why the verifying modes check digests
themselves rather than through ``KSR.auth.pv_auth_check``; this shows the reasons on
the installed Kamailio: one Kamailio (the example cfg with the auth-module handler,
nonces valid for 2 s) and a raw UDP client, each case with the reply code it got.
"""

from __future__ import annotations

import hashlib
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import AUTH_MODULE_ARGS, BENCH  # noqa: E402 - needs ROOT on sys.path
from tests import harness as h  # noqa: E402

RURI = "sip:example.com"
USER = "sip:alice@example.com"


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


HA1 = md5("alice:example.com:secret")  # the handler's stand-in password


def challenge(c: h.SipClient) -> str:
    r = c.request("REGISTER", RURI, from_uri=USER, to_uri=USER)
    m = re.search(r'nonce="([^"]+)"', dict(r.headers).get("WWW-Authenticate", ""))
    assert r.code == 401 and m is not None, r
    return m.group(1)


def answer(c: h.SipClient, nonce: str, uri: str = RURI, qop: bool = True, right: bool = True) -> str:
    ha2 = md5(f"REGISTER:{uri}")
    response = md5(f"{HA1}:{nonce}:00000001:c0ffee:auth:{ha2}") if qop else md5(f"{HA1}:{nonce}:{ha2}")
    extra = ', qop=auth, nc=00000001, cnonce="c0ffee"' if qop else ""
    header = (
        f'Authorization: Digest username="alice", realm="example.com", nonce="{nonce}", uri="{uri}", '
        f'response="{response if right else md5("guess")}", algorithm=MD5{extra}'
    )
    r = c.request("REGISTER", RURI, from_uri=USER, to_uri=USER, headers=(header,))
    stale = " stale=true" if "stale=true" in dict(r.headers).get("WWW-Authenticate", "") else ""
    return f"{r.code}{stale}"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        k = h.Kamailio(
            cfg=h.EXAMPLE_CFG,
            run_dir=Path(tmp),
            defines={"AUTH_DIAMETER_HANDLER": f'"{BENCH / "auth_module_handler.py"}"', "CHILDREN": "1"},
            extra_args=(*AUTH_MODULE_ARGS, "--modparam=auth:nonce_expire:i:2"),
        )
        with h.running(k):
            c = h.SipClient(k.sip_port)
            print("a right answer:", answer(c, challenge(c)))
            print("digest uri sip:bob@example.com for R-URI sip:example.com:", answer(c, challenge(c), uri=USER))
            n = challenge(c)
            print("no qop, nc or cnonce (RFC 2069) where qop=auth was offered:", answer(c, n, qop=False))
            print("  the same request again (a replay):", answer(c, n, qop=False))
            n = challenge(c)
            print("a wrong response:", answer(c, n, right=False))
            print("  then the right one with the same nonce-count:", answer(c, n))
            n = challenge(c)
            time.sleep(3)
            print("a wrong response to an expired nonce:", answer(c, n, right=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
