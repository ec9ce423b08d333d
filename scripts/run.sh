#!/usr/bin/env bash
# The main job: a demonstration of the allocator server and clients in a
# throwaway network namespace. Needs root; never touches the host's routing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bins
bin=$PWD/target/release
ns=mhr-demo-$$
work=$(mktemp -d)
cleanup() {
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    sleep 0.2
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$ns" "$@"; }
say() { printf '\n== %s\n' "$*"; }

ip netns add "$ns"
ip -n "$ns" link set lo up
for i in 0 1; do
    ip -n "$ns" link add "wan$i" type veth peer name "isp$i"
    ip -n "$ns" link set "wan$i" up
    ip -n "$ns" link set "isp$i" up
done
# Two uplinks handing out the same subnet, as USB modems do, plus IPv6.
ip -n "$ns" addr add 192.168.8.100/24 dev wan0
ip -n "$ns" addr add 192.168.8.100/24 dev wan1
ip -n "$ns" addr add 2001:db8:1::100/64 dev wan0 nodad

cat > "$work/server.json" <<JSON
{
    // a demonstration config
    "socket_path": "tas_socket",
    "table_offset": 10000,
    "num_tables": 32,
    "table_timeout": 3600,
    "db_path": "$work/leases.db",
    "addr_families": { "inet": true, "inet6": true }
}
JSON
say "starting table_allocator_server"
in_ns "$bin/table_allocator_server" -c "$work/server.json" 2>"$work/server.log" &
sleep 0.3
in_ns ss -xa | grep -o '@tas_socket' | head -1

say "leasing tables"
for spec in "-4 192.168.8.100 24 wan0" "-4 192.168.8.100 24 wan1" "-6 2001:db8:1::100 64 wan0"; do
    set -- $spec
    t=$(in_ns "$bin/table_allocator_client" "$1" -a "$2" -n "$3" -i "$4" -d tas_socket -l "$work/client.log")
    echo "$4 $2 -> table $t"
    if [ "$1" = -4 ]; then
        ip -n "$ns" route add 192.168.8.0/24 dev "$4" src "$2" table "$t"
        ip -n "$ns" route add default via 192.168.8.1 dev "$4" onlink table "$t"
    fi
done

say "ip rule";        ip -n "$ns" rule
say "ip -6 rule";     ip -n "$ns" -6 rule
say "ip route show table 10000"; ip -n "$ns" route show table 10000
say "ip route show table 10001"; ip -n "$ns" route show table 10001
say "route for a socket bound to wan1"; ip -n "$ns" route get 203.0.113.10 oif wan1

say "unplugging wan1 (ip link del): its client removes its rules and releases"
ip -n "$ns" link del wan1
sleep 0.2
ip -n "$ns" rule
say "server log"; cat "$work/server.log"
