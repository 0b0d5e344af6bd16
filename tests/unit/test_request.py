"""kamailio/request: what an authorize call reads from KSR."""

from __future__ import annotations

from fake_ksr import FakeKSR

from kamailio_auth_diameter.authorize import SipRequest
from kamailio_auth_diameter.kamailio.request import MAX_CREDENTIAL_HEADERS, credentials_count, read_auth_request


def read(ksr: FakeKSR, method: str, proxy: bool, realm: str) -> tuple[SipRequest, int]:
    return read_auth_request(ksr, method, proxy, realm, credentials_count(ksr, proxy))


def test_www_reads_authorization() -> None:
    ksr = FakeKSR()
    ksr.request(
        method="REGISTER",
        ruri="sip:r",
        fu="sip:f@x",
        tu="sip:t@x",
        mi=42,
        authorization=["Digest a=1", "Digest b=2"],
        proxy_authorization=["Digest p=1"],
    )
    req, msgid = read(ksr, "REGISTER", proxy=False, realm="")
    assert msgid == 42
    # www on REGISTER: the identity and the derived realm both come from To
    assert (req.method, req.ruri, req.from_uri, req.to_uri) == ("REGISTER", "sip:r", None, "sip:t@x")
    assert req.credentials == ("Digest a=1", "Digest b=2")


def test_proxy_reads_proxy_authorization() -> None:
    ksr = FakeKSR()
    ksr.request(authorization=["Digest a=1"], proxy_authorization=["Digest p=1"])
    req, _ = read(ksr, "INVITE", proxy=True, realm="")
    assert req.credentials == ("Digest p=1",)


def test_no_headers() -> None:
    ksr = FakeKSR()
    ksr.request()
    req, _ = read(ksr, "INVITE", proxy=False, realm="")
    assert req.credentials == ()


def test_header_count_is_capped() -> None:
    ksr = FakeKSR()
    ksr.request(authorization=[f"Digest n={i}" for i in range(100)])
    req, _ = read(ksr, "INVITE", proxy=False, realm="")
    assert len(req.credentials) == MAX_CREDENTIAL_HEADERS
    assert req.credentials[0] == "Digest n=0"
    reads = [c for c in ksr.calls if c[0] == "hdr.get_idx"]
    assert len(reads) == MAX_CREDENTIAL_HEADERS


def test_missing_bodies_are_skipped() -> None:
    ksr = FakeKSR()
    ksr.request(authorization=["Digest a=1"])
    orig = ksr.pv.get  # KSR says 3 headers, but only one can be fetched
    ksr.pv.get = lambda name: 3 if name == "$hdrc(Authorization)" else orig(name)  # type: ignore[method-assign]
    req, _ = read(ksr, "INVITE", proxy=False, realm="")
    assert req.credentials == ("Digest a=1",)


def test_missing_uris_are_none() -> None:
    ksr = FakeKSR()
    ksr.request(ruri=None, fu=None, tu=None)
    req, _ = read(ksr, "INVITE", proxy=False, realm="")
    assert (req.ruri, req.from_uri, req.to_uri) == (None, None, None)


def uri_reads(ksr: FakeKSR) -> set[str]:
    return {c[1] for c in ksr.calls if c[0] == "pv.get" and c[1] in ("$fu", "$tu")}


def test_only_the_uris_plan_needs_are_read() -> None:
    cases = [
        (("REGISTER", False, ""), {"$tu"}),
        (("REGISTER", True, ""), {"$tu", "$fu"}),  # proxy derives its realm from From
        (("REGISTER", True, "example.com"), {"$tu"}),
        (("INVITE", False, ""), {"$fu"}),
        (("INVITE", True, "example.com"), {"$fu"}),
    ]
    for (method, proxy, realm), wanted in cases:
        ksr = FakeKSR()
        ksr.request(method=method, fu="sip:f@x", tu="sip:t@x")
        req, _ = read(ksr, method, proxy=proxy, realm=realm)
        assert uri_reads(ksr) == wanted, (method, proxy, realm)
        assert (req.from_uri is not None, req.to_uri is not None) == ("$fu" in wanted, "$tu" in wanted)
