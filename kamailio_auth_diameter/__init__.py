"""kamailio-auth-diameter: SIP digest authentication and group checks over Diameter for Kamailio.

The pure core (digest, nonce, sip, wire, authorize, group, outcome, settings) has no
sockets and no KSR; ``kamailio`` adapts it to app_python3, ``transport`` holds the
sockets, ``server`` is the reference Diameter server.
"""

__version__ = "0.1.0"
