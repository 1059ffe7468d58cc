#!/usr/bin/env bash
# Makes the lease-file fixtures in test/desk/fixtures/leases/ with the REAL
# tools Debian ships, once; the tests read the committed files and never need
# these daemons. Run as root on a scratch machine (it creates network
# namespaces and starts daemons on loopback, and removes them again):
#
#   apt-get install -y --no-install-recommends isc-dhcp-server isc-dhcp-client \
#     kea-dhcp4-server kea-dhcp6-server freeradius freeradius-utils busybox
#   bash scripts/make-lease-fixtures.sh [isc|kea|radius ...]
#
# isc     dhcpd -4 in namespace bsl-srv on a bridge; three clients (busybox
#         udhcpc, own MACs) in their own namespaces: leases, a renewal, a
#         release, one client sending relay agent option 82 (circuit-id);
#         dhcpd -6 with two dhclient -6 clients, one of which releases.
# kea     kea-dhcp4 with the memfile backend on the same topology.
# radius  freeradius -f with Debian's default config on loopback, accounting
#         Start/Interim-Update/Stop sent by radclient; the detail file it writes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="${LEASE_FIXTURES_OUT:-$ROOT/test/desk/fixtures/leases}"   # LEASE_FIXTURES_OUT=DIR to try it elsewhere
WORK=$(mktemp -d /tmp/bsl-lease-fixtures.XXXXXX)
mkdir -p "$OUT"
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for ns in bsl-srv bsl-c1 bsl-c2 bsl-c3; do ip netns del "$ns" 2>/dev/null || true; done
}
trap cleanup EXIT

# A bridge 10.77.0.1/24 (2001:db8:77::1/64) in bsl-srv, and three client
# namespaces each with a veth into it and its own MAC.
topology() {
  cleanup
  ip netns add bsl-srv
  ip -n bsl-srv link add br0 type bridge
  ip -n bsl-srv link set lo up
  ip -n bsl-srv addr add 10.77.0.1/24 dev br0
  ip -n bsl-srv addr add 2001:db8:77::1/64 dev br0 nodad
  ip -n bsl-srv link set br0 up
  local i mac
  for i in 1 2 3; do
    mac="52:54:00:0a:00:0$i"
    ip netns add "bsl-c$i"
    ip -n "bsl-c$i" link set lo up
    ip link add "bsl-v$i" type veth peer name eth0 netns "bsl-c$i"
    ip link set "bsl-v$i" netns bsl-srv
    ip -n bsl-srv link set "bsl-v$i" master br0 up
    ip -n "bsl-c$i" link set eth0 address "$mac"
    ip -n "bsl-c$i" link set eth0 up
  done
  sleep 1
}

# busybox udhcpc with a script that really configures the address (so the
# unicast renewal and release can be sent from it).
udhcpc_script() {
  cat > "$WORK/udhcpc.script" <<'SCRIPT'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface" scope global ;;
  bound|renew) ip addr flush dev "$interface" scope global; ip addr add "$ip/$mask" dev "$interface" ;;
esac
exit 0
SCRIPT
  chmod +x "$WORK/udhcpc.script"
}

udhcpc() { # ns args... : obtain a lease and quit
  local ns=$1
  shift
  ip netns exec "$ns" busybox udhcpc -i eth0 -s "$WORK/udhcpc.script" -n -q -t 5 -T 1 "$@"
}

udhcpc_bg() { # ns args... : stay running (SIGUSR1 renews, SIGUSR2 releases)
  local ns=$1
  shift
  ip netns exec "$ns" busybox udhcpc -i eth0 -s "$WORK/udhcpc.script" -f -t 5 -T 1 -p "$WORK/udhcpc-$ns.pid" "$@" >> "$WORK/udhcpc-$ns.log" 2>&1 &
  PIDS+=($!)
  sleep 2
}

# The same clients for every DHCPv4 server (started, with udhcpc_script
# written): c1 stays and renews (a unicast REQUEST), c2 sends option 82
# itself (sub-option 1, circuit-id "eth0/1/7"), takes an address and quits,
# c3 stays and releases.
v4_clients() {
  udhcpc_bg bsl-c1 -x hostname:alice-pc
  udhcpc bsl-c2 -x 0x52:0108657468302f312f37
  udhcpc_bg bsl-c3 -x hostname:carol
  sleep 2
  kill -USR1 "$(cat "$WORK/udhcpc-bsl-c1.pid")"  # renewal
  sleep 2
  kill -USR2 "$(cat "$WORK/udhcpc-bsl-c3.pid")"  # release
  sleep 1
  kill "$(cat "$WORK/udhcpc-bsl-c1.pid")" "$(cat "$WORK/udhcpc-bsl-c3.pid")" 2>/dev/null || true
}

# The same clients for every DHCPv6 server (IA_NA, files under DIR): c1 and
# c2 take an address with dhclient -6; c2 then releases it (dhclient -r
# sends a RELEASE and exits).
v6_clients() { # DIR
  local d=$1 i
  for i in 1 2; do
    ip netns exec "bsl-c$i" dhclient -6 -1 -v -sf /bin/true -lf "$d/dhclient6-$i.leases" -pf "$d/dhclient6-$i.pid" eth0 >> "$d/dhclient6.log" 2>&1 || true
    sleep 1
  done
  sleep 2
  ip netns exec bsl-c2 dhclient -6 -r -v -sf /bin/true -lf "$d/dhclient6-2.leases" -pf "$d/dhclient6-2.pid" eth0 >> "$d/dhclient6.log" 2>&1 || true
  sleep 1
  for i in 1 2; do [ -f "$d/dhclient6-$i.pid" ] && kill "$(cat "$d/dhclient6-$i.pid")" 2>/dev/null || true; done
}

isc() {
  local d="$WORK/isc"
  mkdir -p "$d"
  topology
  cat > "$d/dhcpd.conf" <<'CONF'
authoritative;
default-lease-time 600;
max-lease-time 7200;
# keep the relay agent information (option 82) with the lease: circuit-id
stash-agent-options true;
# write every renewal to the lease file (the default skips early renewals)
dhcp-cache-threshold 0;
subnet 10.77.0.0 netmask 255.255.255.0 {
  range 10.77.0.100 10.77.0.150;
  option routers 10.77.0.1;
}
CONF
  : > "$d/dhcpd.leases"
  ip netns exec bsl-srv dhcpd -4 -f -cf "$d/dhcpd.conf" -lf "$d/dhcpd.leases" -pf "$d/dhcpd.pid" br0 > "$d/dhcpd.log" 2>&1 &
  PIDS+=($!)
  sleep 1
  udhcpc_script
  # 10.77.0.100 (c1), .101 (c2), .102 (c3); dhcpd accepts c2's option 82
  # and, with stash-agent-options, writes option agent.circuit-id; c1's
  # renewal is a new entry, c3's release sends its entry to "free"
  v4_clients
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  cp "$d/dhcpd.leases" "$OUT/isc-dhcpd.leases"

  # DHCPv6: dhcpd -6 on the bridge, dhclient -6 in c1 (IA_NA)
  cat > "$d/dhcpd6.conf" <<'CONF'
default-lease-time 600;
max-lease-time 7200;
subnet6 2001:db8:77::/64 {
  range6 2001:db8:77::100 2001:db8:77::1ff;
}
CONF
  : > "$d/dhcpd6.leases"
  ip netns exec bsl-srv dhcpd -6 -f -cf "$d/dhcpd6.conf" -lf "$d/dhcpd6.leases" -pf "$d/dhcpd6.pid" br0 > "$d/dhcpd6.log" 2>&1 &
  PIDS+=($!)
  sleep 3   # link-local addresses finish DAD
  v6_clients "$d"
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  cp "$d/dhcpd6.leases" "$OUT/isc-dhcpd6.leases"
}

kea() {
  local d="$WORK/kea"
  mkdir -p "$d"
  topology
  udhcpc_script
  cat > "$d/kea-dhcp4.conf" <<CONF
{ "Dhcp4": {
    "interfaces-config": { "interfaces": [ "br0" ], "dhcp-socket-type": "raw" },
    "lease-database": { "type": "memfile", "persist": true, "name": "$d/kea-leases4.csv", "lfc-interval": 0 },
    "control-socket": { "socket-type": "unix", "socket-name": "$d/kea4.sock" },
    "valid-lifetime": 600, "renew-timer": 300, "rebind-timer": 500,
    "store-extended-info": true,
    "subnet4": [ { "id": 1, "subnet": "10.77.0.0/24", "pools": [ { "pool": "10.77.0.100 - 10.77.0.150" } ] } ],
    "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$d/kea-dhcp4.log" } ], "severity": "INFO" } ]
} }
CONF
  KEA_PIDFILE_DIR="$d" KEA_LOCKFILE_DIR="$d" ip netns exec bsl-srv kea-dhcp4 -c "$d/kea-dhcp4.conf" > "$d/kea-dhcp4.out" 2>&1 &
  PIDS+=($!)
  sleep 2
  # with store-extended-info Kea keeps c2's option 82 in user_context (ISC /
  # relay-agent-info); c1's renewal is a new row with a later expire
  v4_clients
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  cp "$d/kea-leases4.csv" "$OUT/kea-leases4.csv"

  cat > "$d/kea-dhcp6.conf" <<CONF
{ "Dhcp6": {
    "interfaces-config": { "interfaces": [ "br0" ] },
    "server-id": { "type": "LLT", "persist": false },
    "lease-database": { "type": "memfile", "persist": true, "name": "$d/kea-leases6.csv", "lfc-interval": 0 },
    "preferred-lifetime": 375, "valid-lifetime": 600, "renew-timer": 300, "rebind-timer": 500,
    "subnet6": [ { "id": 1, "subnet": "2001:db8:77::/64", "interface": "br0", "pools": [ { "pool": "2001:db8:77::100 - 2001:db8:77::1ff" } ] } ],
    "loggers": [ { "name": "kea-dhcp6", "output_options": [ { "output": "$d/kea-dhcp6.log" } ], "severity": "INFO" } ]
} }
CONF
  KEA_PIDFILE_DIR="$d" KEA_LOCKFILE_DIR="$d" ip netns exec bsl-srv kea-dhcp6 -c "$d/kea-dhcp6.conf" > "$d/kea-dhcp6.out" 2>&1 &
  PIDS+=($!)
  sleep 3   # link-local addresses finish DAD
  v6_clients "$d"
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  cp "$d/kea-leases6.csv" "$OUT/kea-leases6.csv"
}

# FreeRADIUS with Debian's default configuration, copied so that logdir and
# radacctdir point into $WORK and it keeps running as root; it listens on
# 127.0.0.1 (and ::1) only, ports 1812/1813. TZ=UTC (as on most servers).
radius() {
  local d="$WORK/radius"
  mkdir -p "$d/log"
  cp -a /etc/freeradius/3.0 "$d/raddb"
  sed -i -E -e "s|^logdir = .*|logdir = $d/log|" -e 's/^(\s*)(user|group) = freerad/\1#\2 = freerad/' "$d/raddb/radiusd.conf"
  # the default site's listeners, on loopback only (auth 1812, acct 1813)
  sed -i -E -e 's/^(\s*)ipaddr = \*/\1ipaddr = 127.0.0.1/' -e 's/^(\s*)ipv6addr = ::$/\1ipv6addr = ::1/' "$d/raddb/sites-available/default"
  TZ=UTC freeradius -X -d "$d/raddb" > "$d/freeradius.log" 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 1 50); do grep -q "Ready to process requests" "$d/freeradius.log" && break; sleep 0.2; done
  grep -q "Ready to process requests" "$d/freeradius.log" || { tail -30 "$d/freeradius.log" >&2; return 1; }
  acct() { echo "$1" | radclient -x -r 1 -t 3 127.0.0.1:1813 acct testing123 >> "$d/radclient.log" 2>&1; sleep "${2:-1}"; }
  local nas='NAS-IP-Address = 192.0.2.254, NAS-Port-Type = Ethernet'
  local now
  now=$(date +%s)
  # alice: Start (with the NAS's Event-Timestamp), Interim-Update, Stop
  acct "Acct-Status-Type = Start, User-Name = \"alice@isp.example\", Framed-IP-Address = 10.0.0.5, Calling-Station-Id = \"52-54-00-0A-00-01\", Acct-Session-Id = \"sess-a1\", Event-Timestamp = $now, $nas, NAS-Port = 1"
  # bob: Start that reached us after 5 s of retries (Acct-Delay-Time), never stopped
  acct "Acct-Status-Type = Start, User-Name = \"bob\", Framed-IP-Address = 10.0.0.6, Acct-Session-Id = \"sess-b1\", Acct-Delay-Time = 5, $nas, NAS-Port = 2"
  acct "Acct-Status-Type = Interim-Update, User-Name = \"alice@isp.example\", Framed-IP-Address = 10.0.0.5, Calling-Station-Id = \"52-54-00-0A-00-01\", Acct-Session-Id = \"sess-a1\", Acct-Session-Time = 3, Acct-Input-Octets = 1200, Acct-Output-Octets = 3400, $nas, NAS-Port = 1"
  acct "Acct-Status-Type = Stop, User-Name = \"alice@isp.example\", Framed-IP-Address = 10.0.0.5, Calling-Station-Id = \"52-54-00-0A-00-01\", Acct-Session-Id = \"sess-a1\", Acct-Session-Time = 4, Acct-Terminate-Cause = User-Request, $nas, NAS-Port = 1"
  # carol: a Stop whose Start we never saw (start from Acct-Session-Time); dual stack with a delegated prefix
  acct "Acct-Status-Type = Stop, User-Name = \"carol\", Framed-IP-Address = 10.0.0.7, Framed-IPv6-Prefix = 2001:db8:7::/64, Delegated-IPv6-Prefix = 2001:db8:700::/56, Acct-Session-Id = \"sess-c0\", Acct-Session-Time = 3600, Acct-Terminate-Cause = Lost-Carrier, $nas, NAS-Port = 3"
  # dave: Start on bob's address — closes bob's session there; an IPv6 address too
  acct "Acct-Status-Type = Start, User-Name = \"dave\", Framed-IP-Address = 10.0.0.6, Framed-IPv6-Address = 2001:db8:6::6, Acct-Session-Id = \"sess-d1\", $nas, NAS-Port = 2"
  kill "${PIDS[-1]}"; wait "${PIDS[-1]}" 2>/dev/null || true
  cat "$d"/log/radacct/127.0.0.1/detail-* > "$OUT/radius-detail"
}

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces, daemons)" >&2; exit 1; }
for what in "${@:-isc kea radius}"; do
  for w in $what; do "$w"; done
done
ls -l "$OUT"
