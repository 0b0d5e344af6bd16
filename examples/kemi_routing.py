"""A KEMI routing script (cfgengine "python") that uses the plugin's functions directly.

Load it with ``modparam("app_python3", "load", "/path/to/kemi_routing.py")``. It finds
the plugin through AUTH_DIAMETER_SITE (the site-packages directory of the venv the
plugin is installed in, or a source checkout), or the default install location.
"""

import os
import site

site.addsitedir(os.environ.get("AUTH_DIAMETER_SITE", "/opt/kamailio-auth-diameter/lib/python3.11/site-packages"))

import KSR

from kamailio_auth_diameter.kamailio.plugin import create


def mod_init():
    return Routing(create(KSR))


class Routing:
    def __init__(self, auth):
        self.auth = auth

    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        # Every callback must return an int on Kamailio 5.6.
        if KSR.is_ACK():
            return 1
        if KSR.is_REGISTER():
            # Same return values as in a native cfg: negative after 401/403/500,
            # 0 after 400 (stop here too), 1 when authenticated.
            if self.auth.diameter_www_authorize(msg, KSR.pv.get("$td")) <= 0:
                return 1
            KSR.sl.send_reply(200, "OK")
            return 1
        if self.auth.diameter_proxy_authorize(msg, KSR.pv.get("$fd")) <= 0:
            return 1
        # the credentials just authorized, not From, which is only what the caller wrote
        if KSR.pv.get("$rU") == "voicemail" and self.auth.diameter_is_user_in(msg, "Credentials,voicemail") < 0:
            KSR.sl.send_reply(403, "Not in group voicemail")
            return 1
        KSR.sl.send_reply(200, "OK")
        return 1
