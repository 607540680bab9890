#!/usr/bin/env bash
# Publish one message as a device, the way its MQTT client connects:
# the device's chain as its certificate, its key, and the CA to check the
# broker with.
#   examples/mosquitto/client.sh [DEVICE_DIR] [PORT]
#   (default certs/device-01, 8883)
# Exit 0: the broker accepted the device; non-zero: it refused it.
set -euo pipefail
device=${1:-certs/device-01}
port=${2:-8883}
ca=${CA:-certs/CA.crt}

mosquitto_pub -h localhost -p "$port" \
    --cafile "$ca" \
    --cert "$device/client_chain.crt" \
    --key "$device/client.key" \
    -t "devices/$(basename "$device")/hello" -m "hello from $(basename "$device")"
