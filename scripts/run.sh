#!/usr/bin/env bash
# The main job: the namespace lab. Builds the release binaries, brings up a
# multihomed host with four uplinks (three DHCP from real dnsmasq ISPs, two of
# them handing out the same subnet, and one static via ifup), shows what the
# system made of it, unplugs an uplink, and tears everything down.
# Needs root; never touches the host namespace's routing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bins
export LAB=${LAB:-mhrdemo} BIN=$PWD/target/release
trap '"$BIN/mhr" lab down' EXIT
"$BIN/mhr" lab down >/dev/null 2>&1 || true
"$BIN/mhr" lab up
host=$LAB-host
say() { printf '\n== %s\n' "$*"; }
say "status: per uplink, the address, its table, its rules, the table's default route, and which ISP answers a probe sent over it"
"$BIN/mhr" lab status
say "ip rule (host namespace of the lab)"; ip -n "$host" rule
say "ip route show table main: empty of defaults, so nothing beats the rules"; ip -n "$host" route show table main
for i in 1 2 3 4; do
    t=$(ip -n "$host" rule | grep "oif wan$i lookup" | awk '{print $(NF-2)}')
    say "ip route show table $t (wan$i)"; ip -n "$host" route show table "$t"
done
say "unplugging wan3: ip link del, then what the udev remove rule runs"
ip -n "$host" link del wan3
MHR_SERVERS_FILE=/run/mhr-lab-$LAB/servers MHR_DNSMASQ_PID_FILE=/run/mhr-lab-$LAB/resolver.pid \
MHR_DHCLIENT_PID_DIR=/run/mhr-lab-$LAB MHR_STANZA_DIR=/run/mhr-lab-$LAB/network-conf \
    ip netns exec "$host" "$BIN/mhr" hotplug remove wan3
sleep 0.3
"$BIN/mhr" lab status
say "allocator server log"; cat "/run/mhr-lab-$LAB/server.log"
