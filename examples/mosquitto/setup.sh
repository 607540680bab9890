#!/usr/bin/env bash
# Makes everything the broker loads, in ./certs (or $1), with absolute paths:
#   CA.crt CA.key           the device CA: yours (CA=, CA_KEY=) or a new one
#   devcert.db              the registry: yours (REGISTRY=) or a new one
#   cafile.pem              the registered CAs (registry ca export), the cafile
#   server.crt server.key   the broker's certificate (serverAuth, localhost)
#   device-01/              a device registered when issued
#   device-02/              a device NOT registered: the plugin registers it
#                           on its first connect (CRL mode refuses nothing)
#   ca.crl                  the CRL of held and revoked devices (CRL mode)
#   mosquitto-plugin.conf   plugin mode: the registry decides every connect
#
# Environment: DEVCERT (the devcert binary), CA + CA_KEY (an existing CA),
# REGISTRY (an existing registry), SUBJECT (subject of the broker and
# devices without CN, default /O=Example), PLUGIN (the plugin .so, default
# /usr/local/lib/libdevcert_mosquitto.so), PORT (default 8883).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
devcert=${DEVCERT:-devcert}
mkdir -p "${1:-certs}"
dir=$(cd "${1:-certs}" && pwd)
subject=${SUBJECT:-/O=Example}
plugin=${PLUGIN:-/usr/local/lib/libdevcert_mosquitto.so}
port=${PORT:-8883}
db=${REGISTRY:-$dir/devcert.db}

if [ -n "${CA:-}" ]; then
    ca=$CA
    ca_key=${CA_KEY:?CA_KEY must name the key of CA}
else
    ca=$dir/CA.crt
    ca_key=$dir/CA.key
    if [ ! -f "$ca" ]; then
        "$devcert" ca --subject "$subject/CN=Example Device Root CA" --key-out "$ca_key" -o "$ca"
    fi
fi
"$devcert" registry --db "$db" ca add "$ca"
"$devcert" registry --db "$db" ca export -o "$dir/cafile.pem" --force

# The broker's own certificate. The SAN names come from server.ext: a
# profile decides the extensions, as with `openssl x509 -req -extfile`.
"$devcert" key -o "$dir/server.key" --force
"$devcert" csr --key "$dir/server.key" --subject "$subject/CN=localhost" -o "$dir/server.csr" --force
"$devcert" sign --csr "$dir/server.csr" --ca "$ca" --ca-key "$ca_key" \
    --profile "$here/server.ext" --days 365 -o "$dir/server.crt" --force

# device-01 registered (Active) when issued; device-02 only issued.
"$devcert" issue --cn device-01 --ca "$ca" --ca-key "$ca_key" \
    --registry "$db" --out-dir "$dir/device-01" --force
"$devcert" issue --cn device-02 --ca "$ca" --ca-key "$ca_key" \
    --out-dir "$dir/device-02" --force

# The CRL (CRL mode's crlfile; harmless to keep fresh in plugin mode).
"$devcert" registry --db "$db" crl --ca "$ca" --ca-key "$ca_key" -o "$dir/ca.crl" --force

cat >"$dir/mosquitto-plugin.conf" <<EOF
# Plugin mode: the devcert registry decides every connect.
#   mosquitto -c $dir/mosquitto-plugin.conf
per_listener_settings false
pid_file $dir/mosquitto.pid
listener $port 127.0.0.1
cafile $dir/cafile.pem
certfile $dir/server.crt
keyfile $dir/server.key
require_certificate true
set_tcp_nodelay true
plugin $plugin
plugin_opt_registry $db
EOF

# Started as root, Mosquitto runs as the user mosquitto: it must read the
# broker's key and write the registry and its folder (SQLite's -wal/-shm).
# (The CA key stays 0600 root: the broker never needs it.)
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then
    chgrp mosquitto "$dir" "$dir/server.key"
    chmod g+rwx "$dir"
    chmod g+r "$dir/server.key"
    if [ -z "${REGISTRY:-}" ]; then
        chgrp mosquitto "$db" && chmod g+rw "$db"
    else
        echo "note: the user mosquitto must read and write $db and its folder" >&2
    fi
fi
echo "broker config: $dir/mosquitto-plugin.conf (plugin mode)"
