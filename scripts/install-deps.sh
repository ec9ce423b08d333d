#!/usr/bin/env bash
# Debian packages the tests and the lab use. Idempotent; needs root.
set -euo pipefail
# binutils (strip, objdump), dpkg and init-system-helpers: the package test.
# python3 (the hostile sender of the trust tests), util-linux (setpriv, unshare).
pkgs=(iproute2 dnsmasq-base isc-dhcp-client ifupdown iputils-ping procps binutils dpkg init-system-helpers python3 util-linux)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
