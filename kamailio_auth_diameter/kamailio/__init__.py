"""The Kamailio adapter: the only code that talks to KSR."""
