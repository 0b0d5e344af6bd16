"""The file app_python3 loads: ``modparam("app_python3", "load", PATH)``.

``python3 -m kamailio_auth_diameter handler-path`` prints PATH. app_python3 imports
this file as a top-level module with its own directory first on sys.path, so it only
puts the directory that holds our package (a venv's site-packages, with its .pth
files, or a source checkout) on the path and hands over to the plugin.

First it checks that the embedded Python runs on its own standard library
(``interpreter.py``): started with another Python's ``python3`` first on PATH it
loads that one's, and would otherwise fail deep in an import with an undefined
symbol. Then ``mod_init`` returns None, which app_python3 reports in one line of its
own, without a traceback, and Kamailio does not start.
"""

import os
import site
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(os.path.dirname(_HERE))
if sys.path and sys.path[0] == _HERE:
    del sys.path[0]  # our sibling modules must not shadow anything as top-level names
if _ROOT not in sys.path:
    # where site.addsitedir puts it too; the .pth files it runs wait until the check passed
    sys.path.append(_ROOT)

import KSR  # noqa: E402 - provided by app_python3

from kamailio_auth_diameter.kamailio import interpreter  # noqa: E402

_FOREIGN_STDLIB = interpreter.check()
if _FOREIGN_STDLIB is None:
    site.addsitedir(_ROOT)
    from kamailio_auth_diameter.kamailio.plugin import create
else:
    KSR.err(f"auth_diameter: {_FOREIGN_STDLIB}\n")


def mod_init():
    """Runs once in Kamailio's main process before it forks; a bad setting stops start-up."""
    if _FOREIGN_STDLIB is not None:
        return None
    return create(KSR)
