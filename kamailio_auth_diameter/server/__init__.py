"""The reference Diameter server: ``python3 -m kamailio_auth_diameter.server``."""
