"""The file app_python3 loads: ``modparam("app_python3", "load", PATH)``.

``python3 -m kamailio_auth_diameter handler-path`` prints PATH. app_python3 imports
this file as a top-level module with its own directory first on sys.path, so it only
puts the directory that holds our package (a venv's site-packages, with its .pth
files, or a source checkout) on the path and hands over to the plugin.
"""

import os
import site
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
site.addsitedir(os.path.dirname(os.path.dirname(_HERE)))
if sys.path and sys.path[0] == _HERE:
    del sys.path[0]  # our sibling modules must not shadow anything as top-level names

import KSR  # noqa: E402 - provided by app_python3

from kamailio_auth_diameter.kamailio.plugin import create  # noqa: E402


def mod_init():
    """Runs once in Kamailio's main process before it forks; a bad setting stops start-up."""
    return create(KSR)
