#!/usr/bin/env bash
# Debian packages the tests and the lab use. Idempotent; needs root.
set -euo pipefail
# binutils (strip, objdump), dpkg and init-system-helpers: the package test.
# python3 (the hostile sender of the trust tests), util-linux (setpriv,
# unshare), systemd (systemd-analyze verify/security on the units; no
# systemd is started).
# dhcpcd-base and udhcpc (with busybox): the agent test runs them as the
# configurers of two uplinks.
pkgs=(iproute2 dnsmasq-base isc-dhcp-client ifupdown iputils-ping procps binutils dpkg init-system-helpers python3 util-linux systemd dhcpcd-base udhcpc busybox)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# NetworkManager's ifupdown dispatcher script (01-ifupdown), for the test
# that drives our hook through it. Only the script is extracted from the
# package: installing network-manager would start a daemon that takes over
# the machine's interfaces.
nm_script=/usr/local/share/multihomed-routing-tests/01-ifupdown
if [ ! -x "$nm_script" ]; then
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    if ! (cd "$tmp" && apt-get download -qq network-manager 2>/dev/null); then
        apt-get update -qq
        (cd "$tmp" && apt-get download -qq network-manager 2>/dev/null)
    fi
    dpkg-deb --fsys-tarfile "$tmp"/network-manager_*.deb |
        tar -x -C "$tmp" ./etc/NetworkManager/dispatcher.d/01-ifupdown
    install -D -m 755 "$tmp/etc/NetworkManager/dispatcher.d/01-ifupdown" "$nm_script"
    rm -rf "$tmp"
fi
