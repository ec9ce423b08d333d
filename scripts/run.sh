#!/usr/bin/env bash
# The main job: the namespace lab. Builds the release binaries, brings up a
# multihomed host running `mhr agent` with five uplinks (three DHCP through
# dhclient and our hook from real dnsmasq ISPs, two of them handing out the
# same subnet, one static via ifup, and one by dhcpcd with no routing hook),
# shows what the system made of it, deletes the agent's rules behind its
# back, fails an ISP over, unplugs an uplink, and tears everything down.
# Needs root; never touches the host namespace's routing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cargo build --release --bins
# The host runs `mhr agent`, its tracker included; wan5 comes up by dhcpcd
# with no routing hook. Cargo builds for the host tuple (.cargo/config.toml).
BIN=$PWD/target/$(rustc -vV | sed -n 's/^host: //p')/release
export LAB=${LAB:-mhrdemo} BIN LAB_WAN5=1
dir=/run/mhr-lab-$LAB
# The tracker's settings: the lab's "internet" as target, wan1 preferred,
# then wan3.
LAB_TRACK=/run/mhr-lab-$LAB.track.json
printf '%s\n' '{ "interfaces": ["wan*"], "targets": [{"kind": "icmp", "address": "203.0.113.10"}],' \
    "  \"preference\": [\"wan1\", \"wan3\"], \"state_file\": \"$dir/track-state.json\", \"scripts_dir\": \"$dir/track.d\" }" \
    > "$LAB_TRACK"
export LAB_TRACK
trap '"$BIN/mhr" lab down; rm -f "$LAB_TRACK"' EXIT
"$BIN/mhr" lab down >/dev/null 2>&1 || true
"$BIN/mhr" lab up
host=$LAB-host
say() { printf '\n== %s\n' "$*"; }
say "status: per uplink, the address, its table, its rules, the table's default route, and which ISP answers a probe sent over it"
"$BIN/mhr" lab status
say "ip rule (host namespace of the lab)"; ip -n "$host" rule
say "ip route show table main: empty of defaults, so nothing beats the rules"; ip -n "$host" route show table main
uplinks="1 2 3 4 5"
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

say "mhr agent: the one owner of the host's routing. The hooks (dhclient, ifup) reported to it; wan5 was configured by dhcpcd alone; the agent leased every table, installed the rules, put the routes in the tables and moved the defaults out of main"
grep -E 'agent started|routed by its own table|moved out of main' "$dir/agent.log" | sed 's/^/  /'
echo "  agent: pid $(cat "$dir/agent.pid"), RSS $(awk '/VmRSS/ {print $2, $3}' "/proc/$(cat "$dir/agent.pid")/status")"
# (comm is cut to 15 bytes, the server's too: argv[0] tells them apart)
echo "  no table_allocator_client runs: $(ip netns pids "$host" | xargs -r -I{} sh -c 'tr "\0" "\n" </proc/{}/cmdline | head -1' 2>/dev/null | grep -c 'table_allocator_client$' || true) found"
a5=$(ip -n "$host" -4 -o addr show dev wan5 | awk '{print $4}' | cut -d/ -f1)
echo "  from wan5's address $a5, answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab --source "$a5" --device wan5)"
echo "  dnsmasq's line for wan5 (from dhcpcd's hook, through the agent): $(grep '@wan5@' "$dir/servers")"

say "drift repaired at once: someone deletes every rule of ours (as systemd-networkd does when it configures a link)"
ip -n "$host" rule | grep 'proto 77' | while read -r prio rest; do
    ip -n "$host" rule del priority "${prio%:}" ${rest% proto 77} 2>/dev/null || true
done
sleep 0.5
echo "  rules of ours half a second later: $(ip -n "$host" rule | grep -c 'proto 77')"
grep 'deleted by someone else' "$dir/agent.log" | head -3 | sed 's/^/  /'

say "health tracker (in the agent): unbound traffic to the best working uplink (preference wan1, then wan3)"
sleep 2
ip -n "$host" rule show priority 50000
echo "unbound probe answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab)"
say "Multipath TCP: an endpoint per routed uplink address, bound to its device (an MPTCP connection gets a subflow over each)"
ip -n "$host" mptcp endpoint show | sed 's/^/  /'
echo "  limits: $(ip -n "$host" mptcp limits show)"
say "ISP1 loses the internet: within about a second unbound traffic moves to wan3, and wan1's MPTCP endpoints go (their subflows close, data moves)"
ip -n "$LAB-isp1" addr del 203.0.113.10/32 dev lo
sleep 3
ip -n "$host" rule show priority 50000
echo "unbound probe answered by: $(ip netns exec "$host" "$BIN/mhr" probe 203.0.113.10 whoami.lab)"
ip -n "$host" mptcp endpoint show | sed 's/^/  /'
ip -n "$LAB-isp1" addr add 203.0.113.10/32 dev lo
sleep 3
say "ISP1 is back, and so are the rule and wan1's endpoints"
ip -n "$host" rule show priority 50000
ip -n "$host" mptcp endpoint show | sed 's/^/  /'
say "mhr status (with health and the agent's view)"
ip netns exec "$host" env MHR_DEFAULTS="$dir/defaults" "$BIN/mhr" status --db "$dir/leases.db" \
    --track-state "$dir/track-state.json" || true
grep -E 'uplink .* -> |unbound traffic' "$dir/agent.log" | sed 's/^/  /'

say "unplugging wan3: ip link del, then what the udev remove rule runs"
ip -n "$host" link del wan3
ip netns exec "$host" env MHR_DEFAULTS="$dir/defaults" "$BIN/mhr" hotplug remove wan3
sleep 0.3
echo "  MPTCP endpoints left (none of wan3's):"
ip -n "$host" mptcp endpoint show | sed 's/^/  /'
"$BIN/mhr" lab status
say "allocator server log"; cat "/run/mhr-lab-$LAB/server.log"
