#!/usr/bin/env bash
# Makes everything mosquitto.conf loads, in ./certs (or $1):
#   CA.crt CA.key           the device CA (made once)
#   server.crt server.key   the broker's certificate (serverAuth, localhost)
#   device-01/              one device, registered in devcert.db
#   ca.crl                  the CRL of deactivated devices (none yet)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
devcert=${DEVCERT:-devcert}
dir=${1:-certs}
db=$dir/devcert.db
mkdir -p "$dir"

if [ ! -f "$dir/CA.crt" ]; then
    "$devcert" ca --subject "/O=ALI/CN=ALI Device Root CA" --key-out "$dir/CA.key" -o "$dir/CA.crt"
fi

# The broker's own certificate. The SAN names come from server.ext: a
# profile decides the extensions, as with `openssl x509 -req -extfile`.
"$devcert" key -o "$dir/server.key" --force
"$devcert" csr --key "$dir/server.key" --subject "/O=ALI/CN=localhost" -o "$dir/server.csr" --force
"$devcert" sign --csr "$dir/server.csr" --ca "$dir/CA.crt" --ca-key "$dir/CA.key" \
    --profile "$here/server.ext" --days 365 -o "$dir/server.crt" --force

# One device, registered (Active) as the broker console would.
"$devcert" issue --cn device-01 --ca "$dir/CA.crt" --ca-key "$dir/CA.key" \
    --registry "$db" --out-dir "$dir/device-01" --force

# The CRL mosquitto.conf names (crlfile).
"$devcert" registry --db "$db" crl --ca "$dir/CA.crt" --ca-key "$dir/CA.key" -o "$dir/ca.crl" --force
