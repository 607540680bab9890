#!/usr/bin/env bash
# CI provisioning: issue a fleet with `devcert batch`, check every device,
# and report in JSON. Re-runnable: devices already complete are kept.
#
#   examples/provision.sh NAMES_FILE OUT_DIR
#
# NAMES_FILE has one device name (CN) per line. Environment:
#   DEVCERT     the devcert binary              (default: devcert on PATH)
#   CA_DIR      folder with CA.crt and CA.key   (default: OUT_DIR/ca, made once)
#   REGISTRY    registry database to register the fleet in (default: none)
#   CONFIG      OpenSSL req config used as subject template (CN replaced per device)
#   PROFILE     extfile profile or `device`      (default: device)
#   DAYS        device validity in days          (default: 500)
#   VALID_AT    also require every device to be valid at this RFC 3339 time
#               (e.g. the end of a rollout)
#
# Exit codes (as devcert's): 0 every device issued and verified; 1 an error
# (bad input, I/O: stop the pipeline); 3 some device failed verification
# (the report on stdout names it).
set -euo pipefail

usage() { echo "usage: $0 NAMES_FILE OUT_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
names=$1
out=$2
devcert=${DEVCERT:-devcert}
ca_dir=${CA_DIR:-$out/ca}
command -v jq >/dev/null || { echo "error: jq is required" >&2; exit 1; }

# 1. The CA, once. Its JSON report gives the serial the broker console shows.
if [ ! -f "$ca_dir/CA.crt" ]; then
    mkdir -p "$ca_dir"
    ca_json=$("$devcert" ca --subject "/O=ALI/CN=ALI Device Root CA" \
        --key-out "$ca_dir/CA.key" -o "$ca_dir/CA.crt" --json)
    echo "CA $(jq -r .certificate.serial <<<"$ca_json") created in $ca_dir" >&2
fi

# 2. The fleet. -q: no progress bar or summary line; the JSON says it all.
batch_args=(--ca "$ca_dir/CA.crt" --ca-key "$ca_dir/CA.key" --names "$names"
            --profile "${PROFILE:-device}" --days "${DAYS:-500}" --out-dir "$out/fleet")
[ -n "${CONFIG:-}" ] && batch_args+=(--config "$CONFIG")
[ -n "${REGISTRY:-}" ] && batch_args+=(--registry "$REGISTRY")
summary=$("$devcert" -q batch "${batch_args[@]}" --json)
manifest=$(jq -r .manifest <<<"$summary")

# 3. Every device's chain against the CA. verify exits 0 (OK), 3 (the
#    certificate is rejected: a finding, keep going) or 1 (cannot read it:
#    something is broken, stop).
verify_args=(--ca "$ca_dir/CA.crt")
[ -n "${VALID_AT:-}" ] && verify_args+=(--at "$VALID_AT")
# (Read the manifest first: a failing jq inside `< <(...)` would go unnoticed.)
devices=$(jq -r '.[] | [.cn, (.dir + "/client_chain.crt")] | @tsv' "$manifest")
rejected='[]'
while IFS=$'\t' read -r cn chain; do
    if verdict=$("$devcert" verify "${verify_args[@]}" "$chain" --json); then
        continue
    else
        rc=$?
    fi
    if [ "$rc" -eq 3 ]; then
        rejected=$(jq -c --arg cn "$cn" --argjson v "$verdict" '. + [{cn: $cn, reason: $v.reason}]' <<<"$rejected")
    else
        echo "error: cannot verify $cn ($chain), devcert exit $rc" >&2
        exit 1
    fi
done <<<"$devices"

# 4. The report: one JSON document on stdout.
jq -n --argjson batch "$summary" --argjson rejected "$rejected" \
    '{devices: $batch.devices, issued: $batch.issued, skipped: $batch.skipped,
      manifest: $batch.manifest, rejected: $rejected, ok: ($rejected | length == 0)}'
[ "$rejected" = '[]' ] || exit 3
