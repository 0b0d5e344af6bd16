"""The SIP side: the URI parts and the credential headers the wire formats need."""
