"""The plugin's own app_python3 handler, for the bench handlers that wrap it.

app_python3 puts a handler's directory first on sys.path, so profile_handler.py and
timing_handler.py import this module by name.
"""

import importlib.util
import os

PATH = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "kamailio_auth_diameter", "kamailio", "handler.py"
)


def mod_init():
    """What the real handler's mod_init returns: the plugin object (None if it refused to start)."""
    spec = importlib.util.spec_from_file_location("_auth_diameter_real_handler", PATH)
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    return real.mod_init()
