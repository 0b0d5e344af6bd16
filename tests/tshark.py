"""Wireshark as an independent judge of our Diameter bytes: dumpcap captures, tshark decodes.

Our encoders and decoders come from one reading of RFC 6733, 4740 and 5090, so a
mistake shared by both round-trips without a complaint. Wireshark's dissector and
its dictionary are someone else's reading: :func:`problems` lists what they object
to (expert warnings and errors, malformed PDUs, AVPs or commands missing from the
dictionary), per message, after TCP reassembly, so that the number of decoded
messages is exact whether one message spans several segments or one segment
carries several messages.
"""

from __future__ import annotations

import dataclasses
import re
import signal
import socket
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path

DUMPCAP = "dumpcap"
TSHARK = "tshark"
# Reassembly is on by default; said here so a user's preferences cannot change the counts.
REASSEMBLY = ("-o", "tcp.desegment_tcp_streams:TRUE", "-o", "diameter.desegment:TRUE")
BAD_SEVERITIES = frozenset({"Warning", "Error"})
UNKNOWN = "Unknown"  # the name Wireshark gives a command or an AVP its dictionary lacks

_EXPERT = re.compile(r"Expert Info \((\w+)/(\w+)\): (.*)", re.S)
_DROPS = re.compile(r"Packets received/dropped on interface .*?: (\d+)/(\d+)")


class Capture:
    """dumpcap on loopback (127.0.0.1), limited to TCP ports, writing a pcapng; a context manager.

    Neither dumpcap's "File:" line nor SIGTERM mark the edges of what it captured:
    packets wait in the kernel's ring buffer for up to its block timeout, and
    dumpcap does not drain them when it stops. So a marker datagram, to a UDP port
    of our own that the filter also takes, goes out until dumpcap has written it to
    the file: at start (the capture is live), and at stop (everything sent before
    it is in the file, since loopback hands packets to the ring in order). Then
    SIGTERM by pid; a capture that dropped packets raises, its counts would be wrong.
    """

    def __init__(self, path: Path, ports: Iterable[int], interface: str = "lo") -> None:
        self.path = path
        self.ports = tuple(ports)
        self.interface = interface
        self.log_path = path.with_suffix(".dumpcap.log")
        self.proc: subprocess.Popen | None = None
        self._marker: socket.socket | None = None
        self._token = f"tests.tshark marker {uuid.uuid4()}"

    def start(self, timeout: float = 10.0) -> Capture:
        self._marker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._marker.bind(("127.0.0.1", 0))
        bpf = " or ".join([*(f"tcp port {p}" for p in self.ports), f"udp port {self._marker.getsockname()[1]}"])
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [DUMPCAP, "-i", self.interface, "-f", bpf, "-w", str(self.path), "-q"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            self._mark("start", timeout)
        except BaseException:
            self._end()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        try:
            self._mark("stop", timeout)
        finally:
            self._end()

    def _mark(self, edge: str, timeout: float) -> None:
        """Send the marker until dumpcap has written it (it flushes its file a few times a second)."""
        assert self.proc is not None and self._marker is not None
        token = f"{self._token} {edge}".encode()
        deadline = time.monotonic() + timeout
        while not (self.path.exists() and token in self.path.read_bytes()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dumpcap did not capture the {edge} marker:\n{self._log()}")
            self._marker.sendto(token, self._marker.getsockname())
            time.sleep(0.05)

    def _end(self) -> None:
        """SIGTERM by pid and wait: dumpcap then writes its statistics, which say whether it dropped packets."""
        assert self.proc is not None and self._marker is not None
        proc, self.proc = self.proc, None
        self._marker.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
                raise RuntimeError(f"dumpcap ignored SIGTERM:\n{self._log()}") from None
        drops = _DROPS.search(self._log())
        if drops is not None and int(drops.group(2)):
            raise RuntimeError(f"dumpcap dropped packets:\n{self._log()}")

    def _log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclasses.dataclass(frozen=True, slots=True)
class Avp:
    code: int
    name: str  # Wireshark's name for it; UNKNOWN if its dictionary lacks the code
    vendor_id: int
    value: str | None  # tshark's rendering of the value; None when it shows none (unknown AVPs)
    parents: tuple[int, ...]  # codes of the Grouped AVPs it sits in, outermost first


@dataclasses.dataclass(frozen=True, slots=True)
class Expert:
    severity: str  # Chat, Note, Warning, Error
    group: str  # Malformed, Undecoded, Protocol, Sequence, ...
    text: str


@dataclasses.dataclass(frozen=True, slots=True)
class DiameterMessage:
    """One Diameter message as Wireshark decoded it."""

    frame: int  # where it was complete (the last of its segments)
    src_port: int
    dst_port: int
    segments: int  # TCP segments it was reassembled from
    command_code: int
    command: str  # e.g. "Multimedia-Auth"; UNKNOWN if Wireshark's dictionary lacks it
    application_id: int
    request: bool
    proxiable: bool
    error: bool
    retransmit: bool  # the T flag
    hop_by_hop: int
    end_to_end: int
    avps: tuple[Avp, ...]  # depth first: a Grouped AVP, then its members
    expert: tuple[Expert, ...]
    malformed: bool

    @property
    def label(self) -> str:
        return f"frame {self.frame} {self.command} {'Request' if self.request else 'Answer'} h2h={self.hop_by_hop:#x}"

    def find(self, *path: int) -> list[Avp]:
        """The AVPs at this path of codes, e.g. find(376, 379, 104) for the Digest-Realm of a
        SIP-Authenticate in a SIP-Auth-Data-Item."""
        return [a for a in self.avps if (*a.parents, a.code) == path]

    def value(self, *path: int) -> str | None:
        found = self.find(*path)
        return found[0].value if found else None


def _field(elem: ET.Element, name: str, anywhere: bool = False) -> ET.Element:
    """elem's child field of this name (or any descendant's): the first one, which is the
    header's when the name recurs inside AVPs."""
    found = elem.find(f"{'.//' if anywhere else ''}field[@name='{name}']")
    if found is None:
        raise ValueError(f"tshark output has no {name} in {elem.get('name')}")
    return found


def _child_avps(elem: ET.Element) -> Iterator[ET.Element]:
    """The nearest diameter.avp elements below elem: a Grouped AVP's members, not theirs."""
    for child in elem:
        if child.get("name") == "diameter.avp":
            yield child
        else:
            yield from _child_avps(child)


def _avps(elem: ET.Element, parents: tuple[int, ...]) -> Iterator[Avp]:
    for node in _child_avps(elem):
        code_field = _field(node, "diameter.avp.code")
        code = int(code_field.get("show", ""))
        # showname "AVP Code: 264 Origin-Host"
        name = code_field.get("showname", "").split(None, 3)[3]
        vendor = node.find("field[@name='diameter.avp.vendorId']")
        value = node.find(f"field[@name='diameter.{name}']")
        yield Avp(
            code=code,
            name=name,
            vendor_id=int(vendor.get("show", "0")) if vendor is not None else 0,
            value=value.get("show") if value is not None else None,
            parents=parents,
        )
        yield from _avps(node, (*parents, code))


def _expert(elem: ET.Element) -> Iterator[Expert]:
    for node in elem.iter("field"):
        if node.get("name") == "_ws.expert":
            m = _EXPERT.match(node.get("showname", ""))
            if m is None:
                raise ValueError(f"unexpected expert info {node.get('showname')!r}")
            yield Expert(*m.groups())


def _message(proto: ET.Element, frame: int, src_port: int, dst_port: int, segments: int) -> DiameterMessage:
    flags = int(_field(proto, "diameter.flags").get("show", ""), 16)
    command = _field(proto, "diameter.cmd.code")
    # showname "Command Code: Multimedia-Auth (286)"
    command_name = command.get("showname", "").partition(": ")[2].rpartition(" (")[0]
    return DiameterMessage(
        frame=frame,
        src_port=src_port,
        dst_port=dst_port,
        segments=segments,
        command_code=int(command.get("show", "")),
        command=command_name,
        application_id=int(_field(proto, "diameter.applicationId").get("show", "")),
        request=bool(flags & 0x80),
        proxiable=bool(flags & 0x40),
        error=bool(flags & 0x20),
        retransmit=bool(flags & 0x10),
        hop_by_hop=int(_field(proto, "diameter.hopbyhopid").get("show", ""), 16),
        end_to_end=int(_field(proto, "diameter.endtoendid").get("show", ""), 16),
        avps=tuple(_avps(proto, ())),
        expert=tuple(_expert(proto)),
        malformed=any(p.get("name") == "_ws.malformed" for p in proto.iter("proto")),
    )


def _tshark(pcap: Path, ports: Iterable[int], *args: str) -> bytes:
    cmd = [TSHARK, "-n", "-r", str(pcap), *REASSEMBLY]
    for port in ports:
        cmd += ["-d", f"tcp.port=={port},diameter"]
    r = subprocess.run([*cmd, *args], capture_output=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"tshark failed ({r.returncode}): {r.stderr.decode(errors='replace')}")
    return r.stdout


def decode(pcap: Path, ports: Iterable[int]) -> list[DiameterMessage]:
    """Every Diameter message in the capture, in order, decoding these TCP ports as Diameter.

    Bytes that tshark does not take for a Diameter message at all (a request with
    the E bit, a length that cannot be right) are not in this list: compare its
    length with what was sent, or ask :func:`undecoded`. In the PDML a message
    reassembled from several segments follows the list of those segments; a
    malformed-packet marker that a dissector exception put at the top of the tree
    follows the message it belongs to.
    """
    messages: list[DiameterMessage] = []
    for packet in ET.fromstring(_tshark(pcap, ports, "-Y", "diameter", "-T", "pdml")).iter("packet"):
        frame = int(_field(packet, "frame.number", anywhere=True).get("show", ""))
        src_port = int(_field(packet, "tcp.srcport", anywhere=True).get("show", ""))
        dst_port = int(_field(packet, "tcp.dstport", anywhere=True).get("show", ""))
        segments = 1
        for proto in packet.findall("proto"):
            name = proto.get("name")
            if name == "fake-field-wrapper":
                count = proto.find(".//field[@name='tcp.segment.count']")
                if count is not None:
                    segments = int(count.get("show", ""))
            elif name == "diameter":
                messages.append(_message(proto, frame, src_port, dst_port, segments))
                segments = 1
            elif name == "_ws.malformed":
                messages[-1] = dataclasses.replace(messages[-1], malformed=True)
    return messages


def undecoded(pcap: Path, ports: Iterable[int]) -> list[int]:
    """Frames whose TCP payload is neither part of a Diameter message nor one (tshark's "Continuation").

    Two passes, so that a segment knows the frame its message was reassembled in."""
    ports = tuple(ports)
    wanted = f"tcp.port in {{{', '.join(map(str, ports))}}} && tcp.len > 0 && !diameter && !tcp.reassembled_in"
    out = _tshark(pcap, ports, "-2", "-Y", wanted, "-T", "fields", "-e", "frame.number")
    return [int(n) for n in out.split()]


def problems(messages: Iterable[DiameterMessage]) -> list[str]:
    """What Wireshark objects to, one line each; empty when every message decodes cleanly
    and every command and AVP is in its dictionary."""
    out = []
    for m in messages:
        if m.command == UNKNOWN:
            out.append(f"{m.label}: command {m.command_code} is not in Wireshark's dictionary")
        for avp in m.avps:
            if avp.name == UNKNOWN:
                where = "/".join(map(str, (*avp.parents, avp.code)))
                out.append(f"{m.label}: AVP {where} (vendor {avp.vendor_id}) is not in Wireshark's dictionary")
        out += [f"{m.label}: {e.severity}/{e.group}: {e.text}" for e in m.expert if e.severity in BAD_SEVERITIES]
        if m.malformed:
            out.append(f"{m.label}: malformed")
    return out


def dictionary(vendor: int = 0) -> dict[int, str]:
    """The AVP codes of this vendor (0: IETF) Wireshark's Diameter dictionary knows, with their names.

    ``tshark -G fields`` lists a field per AVP, blurb "code=N" (vendor AVPs say
    "vendor=V code=N")."""
    r = subprocess.run([TSHARK, "-G", "fields"], capture_output=True, text=True, timeout=60, check=True)
    prefix = f"vendor={vendor} code=" if vendor else "code="
    known = {}
    for line in r.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) > 7 and cols[2].startswith("diameter.") and cols[-1].startswith(prefix):
            known[int(cols[-1].removeprefix(prefix))] = cols[1]
    return known
