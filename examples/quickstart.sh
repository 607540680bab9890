#!/usr/bin/env bash
# Builds devcert, makes a demo CA and issues one device with the seed's own
# OpenSSL config files, then lets OpenSSL check the result.
#   bash examples/quickstart.sh [OUT_DIR]     (default: ./demo)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-demo}"
cargo build --release --manifest-path "$root/Cargo.toml"
devcert="$root/target/release/devcert"
mkdir -p "$out"
if [ ! -f "$out/CA.crt" ]; then
    "$devcert" ca --subject "/CN=devcert Demo Root CA" --key-out "$out/CA.key" -o "$out/CA.crt"
fi
"$devcert" issue --config "$root/examples/seed/client.csr.cfg" --profile "$root/examples/seed/client.crt.cfg" \
    --days 500 --ca "$out/CA.crt" --ca-key "$out/CA.key" --out-dir "$out/client-test" --force
ls -l "$out/client-test"
openssl verify -CAfile "$out/CA.crt" "$out/client-test/client.crt"
"$devcert" verify --ca "$out/CA.crt" "$out/client-test/client_chain.crt"
