"""The floor under the plugin: an app_python3 handler that does everything but the logic.

    .venv/bin/python bench/run.py --modes plugin --handler bench/floor_handler.py

It makes the plugin's KSR reads, one real legacy exchange with the reference server
(prebuilt request bytes, answer not decoded) and the same static 401 or pass, with no
parsing, planning, encoding or decoding. The difference between this and the real
plugin is the cost of the plugin's Python logic inside a Kamailio worker.
"""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import KSR  # provided by app_python3

from kamailio_auth_diameter.sip.uri import parse_uri
from kamailio_auth_diameter.wire import legacy

REQUEST = legacy.encode_auth_request(
    parse_uri("sip:example.com"), parse_uri("sip:alice@example.com"), 1, None, "REGISTER"
)
CHALLENGE = (
    'WWW-Authenticate: Digest realm="example.com", nonce="6b07d04c6a349442dc85e34601f7224b8db75d21e737bbeb", '
    'qop="auth"\r\n'
)


def mod_init():
    return Floor()


class Floor:
    def child_init(self, rank):
        self.sock = None
        return 0

    def diameter_www_authorize(self, msg, realm=""):
        get = KSR.pv.get
        get("$rm")
        body = KSR.hdr.get_idx("Authorization", 0) if get("$hdrc(Authorization)") else None
        get("$ru")
        get("$tu")
        get("$mi")
        if self.sock is None:
            port = int(get("$sel(cfg_get.auth_diameter.diameter_client_port)"))
            self.sock = socket.create_connection(("127.0.0.1", port))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.send(REQUEST)
        self.sock.recv(65536)
        if body is None:
            KSR.hdr.append_to_reply(CHALLENGE)
            KSR.sl.send_reply(401, "Unauthorized")
            return -5
        return 1

    def diameter_proxy_authorize(self, msg, realm=""):
        return 1  # the harness's readiness OPTIONS

    def diameter_is_user_in(self, msg, param=""):
        return 1
