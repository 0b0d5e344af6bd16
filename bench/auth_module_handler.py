"""The alternative the verifying modes did not take, for bench/run.py's ``auth-module`` mode.

    .venv/bin/python bench/run.py --modes noauth,verify,auth-module

An app_python3 handler for kamailio.cfg.example where Kamailio's own ``auth`` module
(loaded by the benchmark with nonce_count=1 and qop=auth) makes the nonces, checks
the response against an HA1 and guards the nonce-count, all in C: the plugin's warm
path with the digest work moved out of Python. The HA1 comes from the same htable
cache; a miss stands in for the Diameter fetch with the benchmark's one password, as
the warm mode never misses after its warm-up. Only what the comparison needs is here
(REGISTER, www, MD5); README, "Verifying in the proxy", says why the plugin does not
work this way.
"""

import hashlib

import KSR  # provided by app_python3

PASSWORD = "secret"  # bench/run.py's user
TABLE = "authdia_ha1"
QOP_AUTH, STALE = 1, 16  # auth_challenge flags
HA1_GIVEN = 1  # pv_auth_check flags: the password is H(A1)
USER_IS_IDENTITY = 1  # pv_auth_check checks: the digest user is the To user (REGISTER)


def mod_init():
    return AuthModule()


class AuthModule:
    def child_init(self, rank):
        return 0

    def diameter_proxy_authorize(self, msg, realm=""):
        return 1  # the harness's readiness OPTIONS

    def diameter_is_user_in(self, msg, param=""):
        return 1

    def diameter_www_authorize(self, msg, realm=""):
        if not KSR.pv.get("$hdrc(Authorization)"):
            return self._challenge(realm, 0, "challenged")
        user = KSR.pv.get("$aU") or ""
        key = f"{realm}\t{user}"
        cached = KSR.htable.sht_get(TABLE, key)
        if not isinstance(cached, str):
            cached = "MD5=" + hashlib.md5(f"{user}:{realm}:{PASSWORD}".encode()).hexdigest()
            KSR.htable.sht_setxs(TABLE, key, cached, 3600)
        rc = KSR.auth.pv_auth_check(realm, cached[4:], HA1_GIVEN, USER_IS_IDENTITY)
        if rc < 0:
            return self._challenge(realm, STALE if rc == -4 else 0, "refused")
        KSR.pv.sets("$avp(auth_diameter)", "authorized")
        KSR.statistics.update_stat("dia_auth_authorized", 1)
        KSR.statistics.update_stat("dia_ha1_cache_hits", 1)
        return 1

    def _challenge(self, realm, flags, label):
        KSR.auth.auth_challenge(realm, QOP_AUTH | flags)  # sends the 401 itself
        KSR.pv.sets("$avp(auth_diameter)", label)
        KSR.statistics.update_stat(f"dia_auth_{label}", 1)
        return -5
