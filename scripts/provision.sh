#!/usr/bin/env bash
# Installs the real services and clients the test suite drives, from Debian's packages, when they are missing.
# The services themselves are started by the suite (test/setup) on private ports in temporary folders.
set -u
need=()
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v slapd >/dev/null 2>&1 || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
command -v mariadbd >/dev/null 2>&1 || need+=(mariadb-server)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import paho.mqtt.client' >/dev/null 2>&1 || need+=(python3-paho-mqtt)
[ ${#need[@]} -eq 0 ] && exit 0

echo "provision: installing ${need[*]}"
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "provision: cannot install ${need[*]} (needs root and apt-get); tests needing them will fail with a clear message" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
# Daemons must not start on install: the suite runs its own instances on private ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/tmp/bulwark-provision.log 2>&1 \
  || { echo "provision: apt-get failed, see /tmp/bulwark-provision.log:" >&2; tail -20 /tmp/bulwark-provision.log >&2; }
rm -f /usr/sbin/policy-rc.d
exit 0
