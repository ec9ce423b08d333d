#!/usr/bin/env bash
# The namespace lab: a multihomed host and four ISPs, all in network
# namespaces this script makes and removes. Never touches the host
# namespace's routing.
#
#   scripts/lab.sh up | status | down
#
# Environment: LAB (name prefix, default mhrlab), BIN (directory with the
# built binaries, default target/<host tuple>/release), LAB_DIR (state directory, default
# /run/mhr-lab-$LAB), LAB_WAN5 (1: the fifth uplink below), LAB_TRACK (a
# tracker config for the agent, JSON; default: no tracker).
#
# Topology: ISP1 and ISP2 hand out the same subnet and the same address by
# DHCP (as USB modems do), ISP3 another subnet, ISP4 is a static uplink
# brought up with ifup. Every ISP runs dnsmasq (DHCP and DNS) and owns the
# shared "internet" address 203.0.113.10, where it answers whoami.lab TXT
# with its own name. The host runs the allocator server, dhclient with our
# hook, and dnsmasq as local resolver fed by our servers file. `mhr agent`
# owns the host's routing: the hooks report to it and it gives every
# address its table, rules and routes.
#
# With LAB_WAN5=1 (what scripts/run.sh shows), a fifth uplink, wan5 from
# ISP5 (10.50.0.0/24), is configured by dhcpcd with no routing hook at
# all: the agent gives it its table, rules and routes; dhcpcd's hook only
# hands over its DNS.
#
# IPv6: ISP1 and ISP2 advertise the same /64 (2001:db8:8::/64) by RA
# (SLAAC; wan1 also makes a temporary privacy address), ISP3 advertises
# 2001:db8:30::/64 and hands out addresses by DHCPv6 (dhclient -6 on wan3).
# The shared IPv6 "internet" address is 2001:db8:ffff::10. The agent
# handles the RA-made addresses and routes.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
# The hook shims: the source tree's, else the installed ones (package).
dhcp_shim=$top/contrib/dhcp/multihomed-routing
[ -e "$dhcp_shim" ] || dhcp_shim=/etc/dhcp/dhclient-enter-hooks.d/multihomed-routing
ifup_shim=$top/contrib/network/multihomed-routing
[ -e "$ifup_shim" ] || ifup_shim=/etc/network/if-up.d/multihomed-routing
LAB=${LAB:-mhrlab}
BIN=${BIN:-$top/target/$(rustc -vV 2>/dev/null | sed -n 's/^host: //p')/release}
DIR=${LAB_DIR:-/run/mhr-lab-$LAB}
HOST=$LAB-host
INTERNET=203.0.113.10
INTERNET6=2001:db8:ffff::10
ISPS="1 2 3 4"
[ "${LAB_WAN5:-0}" = 1 ] && ISPS="1 2 3 4 5"

isp_net() { case $1 in 1|2) echo 192.168.8;; 3) echo 10.30.0;; 4) echo 172.16.4;; 5) echo 10.50.0;; esac; }
isp_net6() { case $1 in 1|2) echo 2001:db8:8;; 3) echo 2001:db8:30;; *) echo;; esac; }
in_host() { ip netns exec "$HOST" "$@"; }

mkns() {
    ip netns add "$1"
    mkdir -p "/etc/netns/$1"
    # `ip netns exec` mounts this over /etc/resolv.conf: dhclient-script
    # writes here, never to the host's resolver file.
    : > "/etc/netns/$1/resolv.conf"
    ip -n "$1" link set lo up
}

wait_for() { # tries command...
    local n=$1; shift
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
    return 1
}

up() {
    if ip netns list | grep -qw "$HOST"; then
        echo "lab $LAB is already up (scripts/lab.sh down first)" >&2; exit 1
    fi
    [ -x "$BIN/mhr" ] || { echo "missing $BIN/mhr: build first (cargo build --release)" >&2; exit 1; }
    # One program under three names, as the package installs it: the
    # original names are links to mhr (made beside a fresh build).
    for b in table_allocator_server table_allocator_client; do
        [ -x "$BIN/$b" ] || ln -sfn mhr "$BIN/$b"
    done
    mkdir -p "$DIR/enter.d" "$DIR/exit.d"
    mkns "$HOST"
    # The host resolves through its local dnsmasq, as a managed host should.
    echo "nameserver 127.0.0.1" > "/etc/netns/$HOST/resolv.conf"
    for i in $ISPS; do
        isp=$LAB-isp$i net=$(isp_net "$i")
        mkns "$isp"
        ip -n "$HOST" link add "wan$i" type veth peer name lan netns "$isp"
        # wan1 also makes a temporary (privacy) address from the RA.
        [ "$i" = 1 ] && ip netns exec "$HOST" sh -c "echo 2 > /proc/sys/net/ipv6/conf/wan1/use_tempaddr"
        ip -n "$HOST" link set "wan$i" up
        ip -n "$isp" link set lan up
        ip -n "$isp" addr add "$net.1/24" dev lan
        ip -n "$isp" addr add "$INTERNET/32" dev lo
        net6=$(isp_net6 "$i")
        v6=()
        if [ -n "$net6" ]; then
            ip -n "$isp" addr add "$net6::1/64" dev lan nodad
            ip -n "$isp" addr add "$INTERNET6/128" dev lo
            # RAs every 10 s (router lifetime 30 s); ISP3 also DHCPv6.
            v6=(--enable-ra --ra-param=lan,10 --interface=lan --listen-address="$INTERNET6")
            if [ "$i" = 3 ]; then
                v6+=(--dhcp-range="$net6::100,$net6::1ff,slaac,64,1h")
            else
                v6+=(--dhcp-range="$net6::,ra-stateless,64,1h")
            fi
        fi
        dhcp=()
        if [ "$i" != 4 ]; then
            dhcp=(--dhcp-range="$net.100,$net.100,255.255.255.0,1h"
                  --dhcp-option=option:router,"$net.1"
                  --dhcp-option=option:dns-server,"$net.1"
                  --dhcp-authoritative --dhcp-leasefile="$DIR/isp$i.leases")
            # ISP3 also hands out an MTU and classless static routes
            # (RFC 3442: these replace the router option).
            [ "$i" = 3 ] && dhcp+=(--dhcp-option=option:mtu,1400
                --dhcp-option=121,198.18.0.0/15,"$net.1",0.0.0.0/0,"$net.1")
        fi
        ip netns exec "$isp" dnsmasq -C /dev/null --user=root --group=root \
            --pid-file="$DIR/isp$i.pid" --log-facility="$DIR/isp$i.log" \
            --bind-interfaces --listen-address="$net.1" --listen-address="$INTERNET" \
            --log-queries --no-resolv --no-hosts --txt-record=whoami.lab,"isp$i" "${dhcp[@]}" "${v6[@]}"
    done

    cat > "$DIR/server.json" <<JSON
{
    "socket_path": "tas_socket",
    "table_offset": 10000,
    "num_tables": 64,
    "table_timeout": 3600,
    "db_path": "$DIR/leases.db",
    "addr_families": { "inet": true, "inet6": true }
}
JSON
    # Daemons must not hold the caller's stdout open.
    in_host "$BIN/table_allocator_server" -c "$DIR/server.json" </dev/null >/dev/null 2>>"$DIR/server.log" &
    echo $! > "$DIR/server.pid"
    wait_for 50 bash -c "ip netns exec $HOST ss -xa | grep -q @tas_socket"

    : > "$DIR/servers"
    in_host dnsmasq -C /dev/null --user=root --group=root --pid-file="$DIR/resolver.pid" \
        --log-facility="$DIR/resolver.log" --log-queries --bind-interfaces \
        --listen-address=127.0.0.1 --no-resolv --no-hosts --servers-file="$DIR/servers" </dev/null >/dev/null

    # The lab's settings file, in the installed file's format; mhr reads it
    # (MHR_DEFAULTS names it instead of /etc/default/multihomed-routing).
    cat > "$DIR/defaults" <<EOF
MHR_CLIENT=$BIN/table_allocator_client
MHR_TAS_SOCKET=tas_socket
MHR_SERVERS_FILE=$DIR/servers
MHR_DNSMASQ_PID_FILE=$DIR/resolver.pid
MHR_DHCLIENT_PID_DIR=$DIR
MHR_STANZA_DIR=$DIR/network-conf
MHR_CLIENT_LOG=$DIR/client.log
MHR_AGENT_SOCKET=$DIR/private/agent.sock
MHR_AGENT_STATE=$DIR/agent-state.json
EOF
    # The agent: a table for every address on wan*, whatever made it, the
    # RA handling, and the tracker when LAB_TRACK names its config.
    track=null
    [ -n "${LAB_TRACK:-}" ] && track="\"$LAB_TRACK\""
    printf '{ "interfaces": ["wan*"], "track": %s, "state_file": "%s" }\n' \
        "$track" "$DIR/agent-state.json" > "$DIR/agent.json"
    # Not through in_host: $! must be the agent itself (ip and env exec it).
    ip netns exec "$HOST" env MHR_DEFAULTS="$DIR/defaults" "$BIN/mhr" agent -c "$DIR/agent.json" \
        --db "$DIR/leases.db" </dev/null >/dev/null 2>>"$DIR/agent.log" &
    echo $! > "$DIR/agent.pid"
    wait_for 50 grep -q "agent started" "$DIR/agent.log"

    # dhclient-script with its hook directories pointed at ours, so nothing
    # is installed on the host.
    sed -e "s#/etc/dhcp/dhclient-enter-hooks.d#$DIR/enter.d#" \
        -e "s#/etc/dhcp/dhclient-exit-hooks.d#$DIR/exit.d#" \
        -e "s#/etc/dhcp/dhclient-enter-hooks\\b#$DIR/enter-hooks#" \
        -e "s#/etc/dhcp/dhclient-exit-hooks\\b#$DIR/exit-hooks#" \
        /sbin/dhclient-script > "$DIR/dhclient-script"
    chmod +x "$DIR/dhclient-script"
    { echo "export MHR_DEFAULTS=$DIR/defaults; MHR=$BIN/mhr"; cat "$dhcp_shim"; } \
        > "$DIR/enter.d/multihomed-routing"

    for i in 1 2 3; do
        in_host dhclient -4 -1 -q -sf "$DIR/dhclient-script" -pf "$DIR/dhclient.wan$i.pid" \
            -lf "$DIR/dhclient.wan$i.leases" "wan$i" </dev/null >/dev/null 2>>"$DIR/dhclient.log"
    done

    # DHCPv6 on wan3 (in the background: it waits for a link-local address).
    in_host dhclient -6 -nw -q -sf "$DIR/dhclient-script" -pf "$DIR/dhclient6.wan3.pid" \
        -lf "$DIR/dhclient6.wan3.leases" wan3 </dev/null >/dev/null 2>>"$DIR/dhclient.log"

    net=$(isp_net 4)
    cat > "$DIR/interfaces" <<EOF
iface wan4 inet static
    address $net.2/24
    gateway $net.1
    dns-nameservers $net.1
    post-up MHR_DEFAULTS=$DIR/defaults MHR=$BIN/mhr $ifup_shim
EOF
    mkdir -p "$DIR/ifstate"
    in_host ifup --no-scripts -i "$DIR/interfaces" --state-dir "$DIR/ifstate" wan4 </dev/null >/dev/null 2>>"$DIR/ifup.log"
    if [ "${LAB_WAN5:-0}" = 1 ]; then
        # wan5: dhcpcd, its state in a private mount namespace, our DNS hook
        # as its only hook (dhcpcd gives hooks no environment but PATH, so
        # the settings file is mounted where mhr looks for it).
        mkdir -p "$DIR/dhcpcd-hooks" "$DIR/etc-default"
        dhcpcd_hook=$top/contrib/dhcpcd/90-multihomed-routing
        [ -e "$dhcpcd_hook" ] || dhcpcd_hook=/usr/lib/dhcpcd/dhcpcd-hooks/90-multihomed-routing
        cp "$dhcpcd_hook" "$DIR/dhcpcd-hooks/"
        cp "$DIR/defaults" "$DIR/etc-default/multihomed-routing"
        in_host env PATH="$BIN:$PATH" unshare --mount --propagation private sh -c "
            mount -t tmpfs tmpfs /run/dhcpcd 2>/dev/null || { mkdir -p /run/dhcpcd && mount -t tmpfs tmpfs /run/dhcpcd; }
            mkdir -p /var/lib/dhcpcd && mount -t tmpfs tmpfs /var/lib/dhcpcd
            mount --bind $DIR/dhcpcd-hooks /usr/lib/dhcpcd/dhcpcd-hooks
            mount --bind $DIR/etc-default /etc/default
            exec dhcpcd -4 -B -A --noipv4ll -f /dev/null -o domain_name_servers wan5" \
            </dev/null >/dev/null 2>>"$DIR/dhcpcd.log" &
        echo $! > "$DIR/dhcpcd.pid"
        wait_for 150 bash -c "ip -n $HOST rule | grep -q 'oif wan5 lookup'" ||
            echo "lab $LAB: wan5 has no table (see $DIR/agent.log, $DIR/dhcpcd.log)" >&2
    fi
    # IPv6: a table for each SLAAC address (wan1-3), the temporary address
    # on wan1, the DHCPv6 address on wan3, and the RA default routes.
    v6ready() {
        local r; r=$(ip -n "$HOST" -6 rule)
        [ "$(grep -c ' oif wan. lookup' <<<"$r")" -ge 4 ] || return 1
        [ "$(grep -c '^10000:' <<<"$r")" -ge 5 ] || return 1
        # Duplicate address detection done: the addresses can be bound.
        [ -z "$(ip -n "$HOST" -6 addr show tentative)" ] || return 1
        local t
        for t in $(grep ' oif wan' <<<"$r" | sed 's/.* lookup \([0-9]*\).*/\1/'); do
            ip -n "$HOST" -6 route show table "$t" default | grep -q via || return 1
        done
    }
    wait_for 300 v6ready || echo "lab $LAB: IPv6 not complete (see $DIR/agent.log, $DIR/dhclient.log)" >&2
    echo "lab $LAB is up"
}

status() {
    ip netns list | grep -qw "$HOST" || { echo "lab $LAB is down"; return 1; }
    printf '%-6s %-16s %-6s %-5s %-28s %s\n' uplink address table rules "default route (table)" "probe $INTERNET"
    for i in $ISPS; do
        dev=wan$i
        if ! ip -n "$HOST" link show "$dev" >/dev/null 2>&1; then
            printf '%-6s (unplugged)\n' "$dev"; continue
        fi
        addr=$(ip -n "$HOST" -4 -o addr show dev "$dev" | awk '{print $4}' | cut -d/ -f1 | head -1)
        table=$(ip -n "$HOST" rule | grep "oif $dev lookup" | awk '{print $(NF-2)}' | head -1)
        rules=$(ip -n "$HOST" rule | grep -c "lookup ${table:-none} proto 77" || true)
        default=$(ip -n "$HOST" route show table "${table:-main}" default 2>/dev/null | head -1 | awk '{print $3}')
        probe=$(in_host "$BIN/mhr" probe "$INTERNET" whoami.lab --device "$dev" 2>/dev/null || echo "no answer")
        printf '%-6s %-16s %-6s %-5s %-28s %s\n' "$dev" "${addr:--}" "${table:--}" "$rules" "${default:--}" "$probe"
    done
    echo
    echo "IPv6 (ip -6 rule of ours, then each table's default route):"
    ip -n "$HOST" -6 rule | grep 'proto 77' | sed 's/^/  /'
    ip -n "$HOST" -6 rule | grep ' oif ' | while read -r _ _ _ _ dev _ table _; do
        printf '  %-5s table %-6s %s\n' "$dev" "$table" "$(ip -n "$HOST" -6 route show table "$table" default | head -1)"
    done
    echo
    echo "servers file:"; sed 's/^/  /' "$DIR/servers"
}

down() {
    ISPS="1 2 3 4 5"
    for ns in "$HOST" $(for i in $ISPS; do echo "$LAB-isp$i"; done); do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
        fi
    done
    sleep 0.3
    for ns in "$HOST" $(for i in $ISPS; do echo "$LAB-isp$i"; done); do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
            ip netns del "$ns" 2>/dev/null || true
        fi
        rm -rf "/etc/netns/$ns"
    done
    rm -rf "$DIR"
    echo "lab $LAB is down"
}

case "${1:-}" in
up) up ;;
status) status ;;
down) down ;;
*) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
