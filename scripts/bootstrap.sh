#!/bin/sh
# Installs what the demo and the tests need on Debian 12 or 13: the Debian packages
# (Kamailio with app_python3 and the C auth_diameter module, sipp, baresip as a real UA,
# PostgreSQL (15 on
# Debian 12, 17 on 13), whose server the tests start on their own for the shared
# store, tshark to decode captured Diameter, freeDiameter as the relay agent, openssl
# for the test CA, kamailio-postgres-modules for Kamailio's own subscriber table and
# the kamctl that fills it, which user import reads, systemd for systemd-analyze, which
# verifies the unit) and a venv made from Debian's /usr/bin/python3, the interpreter
# Kamailio embeds. The package names are the same on both.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="kamailio kamailio-python3-modules kamailio-postgres-modules sip-tester baresip-core python3-venv postgresql tshark freediameterd freediameter-extensions openssl iproute2 systemd"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "bootstrap: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi

if [ ! -x .venv/bin/python ]; then
    /usr/bin/python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
