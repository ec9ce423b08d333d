#!/usr/bin/env bash
# The main job: the namespace lab. Builds the release binaries, brings up a
# multihomed host running `mhr agent` with five uplinks (three DHCP through
# dhclient and our hook from real dnsmasq ISPs, two of them handing out the
# same subnet, one static via ifup, and one by dhcpcd with no routing hook),
# shows what the system made of it, unplugs an uplink, and tears everything
# down.
# Needs root; never touches the host namespace's routing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bins
# The host runs `mhr agent`; wan5 comes up by dhcpcd with no routing hook.
# Cargo builds for the host tuple (.cargo/config.toml).
BIN=$PWD/target/$(rustc -vV | sed -n 's/^host: //p')/release
export LAB=${LAB:-mhrdemo} BIN LAB_AGENT=${LAB_AGENT:-1}
trap '"$BIN/mhr" lab down' EXIT
"$BIN/mhr" lab down >/dev/null 2>&1 || true
"$BIN/mhr" lab up
host=$LAB-host
say() { printf '\n== %s\n' "$*"; }
say "status: per uplink, the address, its table, its rules, the table's default route, and which ISP answers a probe sent over it"
"$BIN/mhr" lab status
say "ip rule (host namespace of the lab)"; ip -n "$host" rule
say "ip route show table main: empty of defaults, so nothing beats the rules"; ip -n "$host" route show table main
uplinks="1 2 3 4"; [ "$LAB_AGENT" = 1 ] && uplinks="1 2 3 4 5"
for i in $uplinks; do
    t=$(ip -n "$host" rule | grep "oif wan$i lookup" | awk '{print $(NF-2)}')
    say "ip route show table $t (wan$i)"; ip -n "$host" route show table "$t"
done
say "IPv6 (ip -6 rule): SLAAC on wan1-3 with a privacy address on wan1, DHCPv6 on wan3"
ip -n "$host" -6 rule
t6=$(ip -n "$host" -6 rule | grep "oif wan1 lookup" | awk '{print $(NF-2)}' | head -1)
say "ip -6 route show table $t6 (wan1): the RA's routes, none in main"
ip -n "$host" -6 route show table "$t6"
a6=$(ip -n "$host" -6 -o addr show dev wan3 scope global | awk '{print $4}' | cut -d/ -f1 | grep '::1' | head -1)
if [ -n "$a6" ]; then
    echo "from wan3's DHCPv6 address $a6, answered by: $(ip netns exec "$host" "$BIN/mhr" probe 2001:db8:ffff::10 whoami.lab --source "$a6")"
fi

dir=/run/mhr-lab-$LAB
if [ "$LAB_AGENT" = 1 ]; then
    say "mhr agent: one process for every uplink. wan5 was configured by dhcpcd alone; the agent leased its table, installed its rules, copied dhcpcd's routes and moved its default out of main"
    grep -E 'agent started|routed by its own table|moved out of main' "$dir/agent.log" | sed 's/^/  /'
    echo "  agent: pid $(cat "$dir/agent.pid"), RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$(cat "$dir/agent.pid")/status")"
    a5=$(ip -n "$host" -4 -o addr show dev wan5 | awk '{print $4}' | cut -d/ -f1)
    echo "  from wan5's address $a5, answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab --source "$a5" --device wan5)"
    echo "  dnsmasq's line for wan5 (from dhcpcd's hook): $(grep '@wan5@' "$dir/servers")"
fi
say "health tracker: unbound traffic to the best working uplink (preference wan1, then wan3)"
printf '%s\n' '{ "interfaces": ["wan*"], "targets": [{"kind": "icmp", "address": "203.0.113.10"}],' \
    "  \"preference\": [\"wan1\", \"wan3\"], \"state_file\": \"$dir/track-state.json\", \"scripts_dir\": \"$dir/track.d\" }" \
    > "$dir/track.json"
ip netns exec "$host" "$BIN/mhr" track -c "$dir/track.json" </dev/null >/dev/null 2>"$dir/track.log" &
tracker=$!
sleep 3
ip -n "$host" rule show priority 50000
echo "unbound probe answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab)"
say "ISP1 loses the internet: within 2.5 s unbound traffic moves to wan3"
ip -n "$LAB-isp1" addr del 203.0.113.10/32 dev lo
sleep 3
ip -n "$host" rule show priority 50000
echo "unbound probe answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab)"
ip -n "$LAB-isp1" addr add 203.0.113.10/32 dev lo
sleep 3
say "ISP1 is back, and so is the rule"
ip -n "$host" rule show priority 50000
say "mhr status (with health)"
ip netns exec "$host" "$BIN/mhr" status --db "$dir/leases.db" --servers-file "$dir/servers" \
    --track-state "$dir/track-state.json" || true
kill "$tracker"
wait "$tracker" 2>/dev/null || true
grep -E 'uplink|unbound' "$dir/track.log" | sed 's/^/  /'

say "unplugging wan3: ip link del, then what the udev remove rule runs"
ip -n "$host" link del wan3
MHR_SERVERS_FILE=/run/mhr-lab-$LAB/servers MHR_DNSMASQ_PID_FILE=/run/mhr-lab-$LAB/resolver.pid \
MHR_DHCLIENT_PID_DIR=/run/mhr-lab-$LAB MHR_STANZA_DIR=/run/mhr-lab-$LAB/network-conf \
    ip netns exec "$host" "$BIN/mhr" hotplug remove wan3
sleep 0.3
"$BIN/mhr" lab status
say "allocator server log"; cat "/run/mhr-lab-$LAB/server.log"
