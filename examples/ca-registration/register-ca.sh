#!/usr/bin/env bash
# Proof of possession for registering a CA with a cloud MQTT broker: the
# broker shows a registration code and asks for a "verification
# certificate" whose CN is that code, signed by the CA being registered.
#
#   examples/ca-registration/register-ca.sh REGISTRATION_CODE [CA_DIR] [OUT_DIR]
#
# CA_DIR holds CA.crt and CA.key (default: .); OUT_DIR gets
# verification.key, verification.csr and verification.crt (default:
# ./verification). Then upload CA.crt and verification.crt to the broker.
set -euo pipefail
if [ $# -lt 1 ] || [ -z "$1" ]; then
    echo "usage: $0 REGISTRATION_CODE [CA_DIR] [OUT_DIR]" >&2
    exit 2
fi
code=$1
ca_dir=${2:-.}
out=${3:-verification}
devcert=${DEVCERT:-devcert}
mkdir -p "$out"

# 1. A throwaway key for the verification certificate.
"$devcert" key -o "$out/verification.key" --force
# 2. A CSR whose CN is the registration code (nothing else is needed).
"$devcert" csr --key "$out/verification.key" --subject "/CN=$code" -o "$out/verification.csr" --force
# 3. Signed by the CA being registered: only its key holder can do this.
#    A short validity: the certificate is only looked at once.
"$devcert" sign --csr "$out/verification.csr" --ca "$ca_dir/CA.crt" --ca-key "$ca_dir/CA.key" \
    --days 7 -o "$out/verification.crt" --force
# 4. Check it before uploading: it must chain to the CA.
"$devcert" verify --ca "$ca_dir/CA.crt" "$out/verification.crt" >/dev/null

cat <<MSG
Upload these two files in the broker console (CA certificate registration):
  CA certificate:           $ca_dir/CA.crt
  verification certificate: $out/verification.crt   (CN=$code)
The verification key ($out/verification.key) is not needed afterwards.
MSG
