"""The proxy verifies digests itself, with HA1s fetched from the Diameter server.

Modes ``rfc4740-ha1`` (an RFC 4740 MAR answered with Digest-HA1, "Flow B") and ``cx``
(a 3GPP Cx MAR answered with SIP-Digest-Authenticate) differ only in how an HA1 is
fetched (:mod:`.ha1_source`); everything else is here:

* Our own nonces (nonce.py: HMAC-signed, with expiry, bound to the realm), valid on
  every worker and every Kamailio host holding the same secret file.
* The judgement is the server's (digest_check.py): qop=auth required, the algorithm
  one we offered, the digest ``uri`` naming the Request-URI, stale=true only for a
  correct response, and a nonce-count that must grow per nonce, kept in a table
  shared by this Kamailio's workers (a replay on another worker is refused). A nonce
  made before this Kamailio started has no count here, so none is a first use.
* HA1s cached in a shared table for ``ha1_cache_ttl`` seconds: a request with
  credentials of a cached user needs no Diameter message. A response that fails
  against a cached HA1 is checked once more against a fresh one before it is
  refused, so a changed password takes effect at once; an unknown user is dropped.
* Challenges: one header per algorithm, SHA-256 first (RFC 8760), for the algorithms
  of ``digest_algorithms`` that the server has an HA1 for once the user is known.

A request without credentials is challenged without asking the server: the first
request of a flow costs no round trip, and nothing a client sends without a password
makes the proxy send a Diameter message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from .. import digest_check, metrics, outcome, secret_file, settings
from ..authorize import AuthContext
from ..digest_check import Check, DigestVerdict, Presented, Target
from ..group import GroupContext
from ..kamailio.htable import KamailioTables
from ..nonce import NonceFactory
from ..outcome import Outcome
from ..settings import Settings, SettingsError
from .contract import Environment
from .ha1_source import Fetched, Ha1Source
from .shared import IDENT_LEN, SharedTables, TableError, cache_key, decode_ha1s, encode_ha1s

MIN_SECRET = 32  # bytes: the nonce secret is an HMAC-SHA256 key
NC_GRACE = 5  # s the replay guard keeps a nonce's count past its expiry (our clock judges both)


def read_secret(path: str) -> bytes:
    """The nonce secret, or SettingsError naming ``nonce_secret_file`` and what is wrong."""
    where = f"{settings.GROUP}.nonce_secret_file"
    if not path:
        raise SettingsError(f"{where}: required in this mode (a file of at least {MIN_SECRET} random bytes)")
    try:
        secret_file.check(path, where)
        with open(path, "rb") as f:
            secret = f.read().strip()
    except secret_file.InsecureFile as exc:
        raise SettingsError(str(exc)) from None
    except OSError as exc:
        raise SettingsError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if len(secret) < MIN_SECRET:
        raise SettingsError(
            f"{where}: {path} holds {len(secret)} bytes, fewer than {MIN_SECRET}: "
            f"head -c 48 /dev/urandom | base64 > {path}"
        )
    return secret


# Our nonces' salt (nonce.py) is this Kamailio's instance (4 hex) and its replay-guard
# slot (4 hex); the slot's record knows its nonce by the start of the nonce's MAC.
def _slot_key(slot: str) -> str:
    return f"s{slot}"


def _ident(nonce: str) -> str:
    return nonce[16 : 16 + IDENT_LEN]


class VerifyBackend:
    def __init__(
        self,
        env: Environment,
        source: Ha1Source,
        tables: SharedTables | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._env = env
        self._instance = env.instance or os.urandom(2).hex()  # in our nonces: whose slots hold their counts
        self._started = int(env.started)  # whole seconds, as nonces carry them
        self._wall_clock = wall_clock  # nonce expiry: hosts sharing the secret agree on wall-clock time
        self._source = source
        self._given_tables = tables  # unit tests and the check tool; Kamailio's htable otherwise
        self._tables: SharedTables | None = tables
        self._nonces: NonceFactory | None = None
        self._secret: tuple[str, bytes] = ("", b"")
        self._algorithms: tuple[str, ...] = ()
        self._ttl = 0
        self._lifetime = 0
        self._safe_realms: set[str] = set()  # realms known to fit a challenge's quotes: a few per proxy

    def configure(self, s: Settings, deadline: float) -> None:
        secret = read_secret(s.nonce_secret_file)
        if self._nonces is None or self._secret != (s.nonce_secret_file, secret) or self._lifetime != s.nonce_lifetime:
            self._nonces = NonceFactory(secret, s.nonce_lifetime, self._wall_clock)
            self._secret, self._lifetime = (s.nonce_secret_file, secret), s.nonce_lifetime
        if self._given_tables is None:
            tables = KamailioTables(self._env.ksr, s.nc_table, s.ha1_table)
            try:
                tables.check()
            except TableError as exc:
                raise SettingsError(f"{settings.GROUP}.nc_table/ha1_table: {exc}") from None
            self._tables = tables
        self._algorithms = settings.algorithms(s.digest_algorithms)
        self._ttl = s.ha1_cache_ttl
        self._source.configure(s, deadline)

    def close(self, deadline: float | None) -> None:
        self._source.close(deadline)

    def challenge(self, realm: str, proxy: bool) -> Outcome:
        if not self._safe_realm(realm):
            return outcome.SERVER_ERROR
        return self._challenge(realm, proxy, "challenged")

    def is_user_in(self, ctx: GroupContext, group_name: str, msgid: int, start: float) -> int:
        return self._source.is_user_in(ctx, group_name, start)

    # --- authorize ------------------------------------------------------------------

    def authorize(self, ctx: AuthContext, proxy: bool, msgid: int, start: float) -> Outcome:
        nonces, tables = self._nonces, self._tables
        assert nonces is not None and tables is not None, "configure() first"
        realm = ctx.realm
        if not self._safe_realm(realm):
            return outcome.SERVER_ERROR
        cred = ctx.credentials
        if cred is None:
            return self._challenge(realm, proxy, "challenged")
        ruri = ctx.ruri
        screened = digest_check.screen(
            nonces, realm, cred.params, Target(ruri.user, ruri.host, ruri.port or None), self._algorithms
        )
        if isinstance(screened, DigestVerdict):
            return self._challenge(realm, proxy, "refused", note=screened.reason)
        username = cred.username
        if digest_check.split_username(username, cred.realm) is None:
            return outcome.forbidden(f"digest username {username!r} is not of realm {cred.realm!r}")
        key = cache_key(cred.realm, username)
        cached = tables.get_ha1s(key) if self._ttl else None
        ha1s = decode_ha1s(cached) if cached is not None else None
        fresh = ha1s is None
        if ha1s is None:
            self._env.events(metrics.HA1_FETCH)
            fetched = self._fetch(ctx, username, key, start)
            if isinstance(fetched, Outcome):
                return fetched
            ha1s = fetched
        else:
            self._env.events(metrics.HA1_CACHE_HIT)
        check = self._judge(screened, ha1s, ctx.method)
        if check is None:  # the UA chose an algorithm the server has no HA1 for
            return self._challenge(realm, proxy, "refused", ha1s)
        if check is Check.WRONG and not fresh:
            self._env.events(metrics.HA1_REFETCH)
            fetched = self._fetch(ctx, username, key, start)  # a changed password takes effect now
            if isinstance(fetched, Outcome):
                return fetched
            if fetched != ha1s:
                ha1s = fetched
                check = self._judge(screened, ha1s, ctx.method)
        if check is Check.STALE:
            return self._challenge(realm, proxy, "stale", ha1s, stale=True)
        if check is not Check.AUTHENTICATED:
            return self._challenge(realm, proxy, "refused", ha1s)
        nonce = screened.params["nonce"]
        expiry = nonces.expiry(nonce)
        ours = nonce[8:12] == self._instance
        if not ours and expiry - self._lifetime < self._started:
            # made before this Kamailio started: by another host, or by this one before a
            # restart, whose counts went with its shared memory; a first use cannot be told
            return self._challenge(realm, proxy, "stale", ha1s, stale=True)
        lifetime = max(1, expiry - int(nonces.clock()) + NC_GRACE)
        key = _slot_key(nonce[12:16]) if ours else nonce
        try:
            fresh_count = tables.advance_nc(key, _ident(nonce), screened.nc, lifetime, ours)
        except TableError as exc:
            self._env.log(f"authorize: {exc}")
            return outcome.SERVER_ERROR
        if not fresh_count:
            self._env.events(metrics.REPLAY)
            why = "not above the last, or its nonce's slot was taken over"
            note = f"replayed response for {username!r} (nc {screened.params['nc']} {why})"
            return self._challenge(realm, proxy, "stale", ha1s, stale=True, note=note)
        return outcome.PASS

    def _safe_realm(self, realm: str) -> bool:
        """Whether ``realm`` can stand inside a challenge's quotes (logged if not)."""
        if realm in self._safe_realms:
            return True
        if outcome.UNSAFE_IN_QUOTES.intersection(realm):
            self._env.log(f"authorize: realm {realm!r} cannot go into a challenge")
            return False
        if len(self._safe_realms) < 1024:  # realms come from the cfg or To/From domains: stay bounded
            self._safe_realms.add(realm)
        return True

    def _judge(self, screened: Presented, ha1s: dict[str, str], method: str) -> Check | None:
        ha1 = ha1s.get(screened.algorithm)
        return digest_check.judge(screened, ha1, method) if ha1 is not None else None

    def _fetch(self, ctx: AuthContext, username: str, key: str, start: float) -> dict[str, str] | Outcome:
        """The user's HA1s from the server, cached; or the outcome when there are none."""
        fetched: Fetched = self._source.fetch(ctx, username, start)
        tables = self._tables
        assert tables is not None
        if fetched.unknown:
            tables.drop_ha1s(key)
            return outcome.forbidden(f"the server does not know {username!r} in {ctx.realm!r}")
        if not fetched.ha1s:
            return outcome.SERVER_ERROR  # the source logged why
        if self._ttl:
            tables.put_ha1s(key, encode_ha1s(fetched.ha1s), self._ttl)
        return dict(fetched.ha1s)

    def _challenge(
        self,
        realm: str,
        proxy: bool,
        label: str,
        ha1s: dict[str, str] | None = None,
        stale: bool = False,
        note: str = "",
    ) -> Outcome:
        """401/407 with one header per algorithm, all with one fresh nonce that claims
        its replay-guard slot (see shared.py); ``ha1s`` (the user's, when known) narrows
        the algorithms to those the server has an HA1 for."""
        nonces = self._nonces
        assert nonces is not None
        tables = self._tables
        assert tables is not None
        offered = self._algorithms if ha1s is None else [a for a in self._algorithms if a in ha1s] or self._algorithms
        slot = f"{tables.next_slot():04x}"
        nonce = nonces.make(realm, self._instance + slot)
        try:
            tables.claim(_slot_key(slot), _ident(nonce), self._lifetime + NC_GRACE)
        except TableError as exc:
            self._env.log(f"authorize: {exc}")
            return outcome.SERVER_ERROR
        tail = ", stale=true" if stale else ""
        head = f'Digest realm="{realm}", nonce="{nonce}", qop="auth", algorithm='
        return outcome.challenges(proxy, [head + a + tail for a in offered], label, note)
