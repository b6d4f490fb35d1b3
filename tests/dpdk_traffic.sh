#!/usr/bin/env bash
# DPDK source and capture sink with real traffic (issue 14, item 5).
#
#   dpdk_traffic.sh SPATE PACKET_CHECK pcap|veth
#
# Both modes first record a capture with tcpdump from real traffic between
# two network namespaces this test creates (ping and iperf3, TCP and UDP,
# offloads off so every frame is a wire frame), then:
#   pcap  a bus replays it with a `type: dpdk` source on net_pcap into a
#         persisted four-shard stream (shard by symmetric flow hash) and a
#         one-shard stream, with the pcapng plugin capturing the latter;
#   veth  tcpreplay sends it at top speed into a veth pair whose far end a
#         `type: dpdk` source reads with net_af_packet, with the flow-monitor
#         of docs/examples/appliance running on the stream.
# Every frame is then checked byte for byte, each once, in capture order per
# shard, in the stream (packet_check), in `spate log export --pcapng` of the
# rings and of the shard logs, and in the plugin's capture; the exports are
# read by Debian's capinfos and tcpdump unchanged (the one-shard export's
# `tcpdump -xx` dump equals the capture's). Skips (77) without root,
# network namespaces, tcpdump, tcpreplay, iperf3, ping or capinfos.
set -u
SPATE=$1
CHECK=$2
MODE=$3

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces, veth, tcpdump)"
for t in ip tcpdump tcpreplay iperf3 ping capinfos; do
	command -v "$t" >/dev/null || skip "$t is not installed"
done

ID=$$
NS1=spt${ID}a NS2=spt${ID}b NS3=spt${ID}c
VA=spa$ID VB=spb$ID VR=spr$ID VS=sps$ID
DIR=$(mktemp -d /tmp/spate-dpdk-XXXXXX)
BUS=dpdk$ID
ENGINE=
cleanup() {
	[ -n "$ENGINE" ] && kill "$ENGINE" 2>/dev/null && wait "$ENGINE" 2>/dev/null
	ip netns del "$NS1" 2>/dev/null
	ip netns del "$NS2" 2>/dev/null
	ip netns del "$NS3" 2>/dev/null
	ip link del "$VS" 2>/dev/null
	# Stream regions live in hugetlbfs when pages are free, else /dev/shm.
	rm -f /dev/shm/spate."$BUS".* /dev/hugepages/spate."$BUS".* 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$DIR/run.log" ] && tail -30 "$DIR/run.log"; exit 1; }

ip netns add "$NS1" 2>/dev/null || skip "cannot create network namespaces here"
ip netns add "$NS2" || fail "netns"
ip link add "$VA" type veth peer name "$VB" || skip "cannot create veth pairs here"
ip link set "$VA" netns "$NS1"
ip link set "$VB" netns "$NS2"
for p in "$NS1 $VA 10.213.0.1" "$NS2 $VB 10.213.0.2"; do
	set -- $p
	ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	ip netns exec "$1" ip link set lo up
	ip netns exec "$1" ip addr add "$3/24" dev "$2"
	ip netns exec "$1" ip link set "$2" up
	# Wire frames only (no TSO/GSO/GRO super-frames in the capture).
	command -v ethtool >/dev/null && ip netns exec "$1" ethtool -K "$2" tso off gso off gro off \
		>/dev/null 2>&1
done

# --- the capture: real ping and iperf3 traffic, recorded by tcpdump -------
CAP=$DIR/traffic.pcap
ip netns exec "$NS1" tcpdump -i "$VA" -s 0 -U -w "$CAP" -nn 2>"$DIR/tcpdump.err" &
TCPDUMP=$!
for _ in $(seq 100); do grep -q listening "$DIR/tcpdump.err" && break; sleep 0.05; done
ip netns exec "$NS2" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
IPERF=$!
sleep 0.3
ip netns exec "$NS1" ping -c 20 -i 0.01 -q 10.213.0.2 >/dev/null || fail "ping"
timeout 30 ip netns exec "$NS1" iperf3 -c 10.213.0.2 -p 5201 -u -b 4M -l 900 -t 1 >/dev/null 2>&1 ||
	fail "iperf3 UDP"
ip netns exec "$NS2" iperf3 -s -1 -p 5202 >/dev/null 2>&1 &
sleep 0.3
timeout 30 ip netns exec "$NS1" iperf3 -c 10.213.0.2 -p 5202 -n 200K -M 1200 >/dev/null 2>&1 || fail "iperf3 TCP"
sleep 0.3
kill -INT "$TCPDUMP"; wait "$TCPDUMP" 2>/dev/null
wait "$IPERF" 2>/dev/null
N=$(capinfos -c -M "$CAP" | awk '/Number of packets/ {print $NF}')
[ -n "$N" ] && [ "$N" -gt 500 ] || fail "the capture holds ${N:-no} packets"
echo "capture: $N frames of ping, iperf3 UDP and TCP"

wait_for() { # PATTERN: until the engine log shows it (20 s)
	for _ in $(seq 400); do grep -q "$1" "$DIR/run.log" && return 0; sleep 0.05; done
	fail "the engine never logged '$1'"
}
stop_engine() {
	kill -INT "$ENGINE"; wait "$ENGINE"; local rc=$?; ENGINE=
	[ $rc -eq 0 ] || fail "spate run exited $rc"
}

# The unchanged Debian readers: count and a byte dump equal to the capture's.
check_export() { # FILE [ordered]
	"$CHECK" file "$1" "$CAP" ${2:+--ordered} || fail "$1 differs from the capture"
	local c; c=$(capinfos -c -M "$1" | awk '/Number of packets/ {print $NF}')
	[ "$c" = "$N" ] || fail "capinfos counts $c packets in $1, not $N"
	tcpdump -r "$1" -nn >/dev/null 2>&1 || fail "tcpdump cannot read $1"
	if [ -n "${2:-}" ]; then
		diff <(tcpdump -r "$CAP" -t -nn -xx 2>/dev/null) <(tcpdump -r "$1" -t -nn -xx 2>/dev/null) \
			>/dev/null || fail "tcpdump -xx of $1 differs from the capture's"
	fi
}

if [ "$MODE" = pcap ]; then
	cat >"$DIR/bus.yaml" <<EOF
bus: $BUS
state_dir: $DIR/state
streams:
  - name: packets
    shards: 4
    ring_size: 4MiB
    huge_pages: off
    durability: interval
  - name: ordered
    shards: 1
    ring_size: 4MiB
    huge_pages: off
consumers:
  - name: capture
    stream: ordered
    plugin: pcapng
    starting_position: trim_horizon
    options:
      path: $DIR/plugin-%s.pcapng
sources:
  - name: replay
    type: dpdk
    stream: packets
    port: net_pcap_t${ID}a,rx_pcap=$CAP
    shard_by: flow
    idle: sleep
  - name: replay1
    type: dpdk
    stream: ordered
    port: net_pcap_t${ID}b,rx_pcap=$CAP
    idle: sleep
EOF
	"$SPATE" run "$DIR/bus.yaml" >"$DIR/run.log" 2>&1 &
	ENGINE=$!
	wait_for "source replay1: dpdk port"
	grep -q "EAL --" "$DIR/run.log" || fail "the engine did not say which EAL arguments it used"
	"$CHECK" stream "$BUS" packets "$CAP" --wait 20 || fail "stream packets"
	"$CHECK" stream "$BUS" ordered "$CAP" --wait 20 --ordered || fail "stream ordered"
	"$SPATE" log export "$DIR/bus.yaml" packets --pcapng "$DIR/ring.pcapng" >/dev/null ||
		fail "export of the rings"
	check_export "$DIR/ring.pcapng"
	"$SPATE" log export "$DIR/bus.yaml" ordered --pcapng "$DIR/ordered.pcapng" >/dev/null ||
		fail "export of the one-shard ring"
	check_export "$DIR/ordered.pcapng" ordered
	stop_engine
	grep -q "queue 0: $N packets" "$DIR/run.log" || fail "the source did not count $N packets"
	check_export "$DIR/plugin-0.pcapng" ordered
	# The shard logs, from their start and from a later sequence number.
	for s in 0000 0001 0002 0003; do
		"$SPATE" log export "$DIR/state/log/packets/$s" --pcapng "$DIR/log-$s.pcapng" >/dev/null ||
			fail "export of log $s"
	done
	command -v mergecap >/dev/null || skip "mergecap (wireshark-common) is missing"
	mergecap -a -w "$DIR/logs.pcapng" "$DIR"/log-000?.pcapng || fail "mergecap"
	check_export "$DIR/logs.pcapng"
	"$SPATE" log export "$DIR/state/log/packets/0000" --from 5 --pcapng "$DIR/from5.pcapng" \
		>"$DIR/from5.out" || fail "export --from"
	c0=$(capinfos -c -M "$DIR/log-0000.pcapng" | awk '/Number of packets/ {print $NF}')
	c5=$(capinfos -c -M "$DIR/from5.pcapng" | awk '/Number of packets/ {print $NF}')
	[ "$c0" -le 5 ] || [ "$c5" -eq $((c0 - 5)) ] || fail "--from 5 exported $c5 of $c0"
	echo "OK: net_pcap replay of $N frames: streams, ring and log exports, plugin capture"
	exit 0
fi

# --- veth: tcpreplay at top speed into net_af_packet ------------------------
ip netns add "$NS3" || fail "netns"
ip link add "$VR" type veth peer name "$VS" || fail "veth"
ip link set "$VR" netns "$NS3"
ip netns exec "$NS3" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
sysctl -qw "net.ipv6.conf.$VS.disable_ipv6=1" 2>/dev/null
ip netns exec "$NS3" ip link set "$VR" up
ip link set "$VS" up
# The appliance example (docs/examples/appliance/appliance.yaml) as it is,
# but for its bus name, directories, plugin path and port.
[ -f "${APPLIANCE:-}" ] && [ -f "${FLOWMON:-}" ] || fail "APPLIANCE and FLOWMON must name the example"
sed -e "s|^bus: appliance|bus: $BUS|" -e "s|/tmp/spate/appliance|$DIR|g" \
	-e "s|plugin: ./flowmon.so|plugin: $FLOWMON|" \
	-e "s|port: net_af_packet0,iface=eth1,|port: net_af_packet_t$ID,iface=$VS,|" \
	"$APPLIANCE" >"$DIR/bus.yaml"
grep -q "iface=$VS" "$DIR/bus.yaml" || fail "the example's port line changed: update this test"
"$SPATE" run "$DIR/bus.yaml" >"$DIR/run.log" 2>&1 &
ENGINE=$!
wait_for "source wire: dpdk port"
sleep 0.5
ip netns exec "$NS3" tcpreplay --topspeed -i "$VR" "$CAP" >"$DIR/tcpreplay.out" 2>&1 ||
	fail "tcpreplay: $(cat "$DIR/tcpreplay.out")"
grep -q "Successful packets: *$N" "$DIR/tcpreplay.out" || fail "tcpreplay: $(cat "$DIR/tcpreplay.out")"
"$CHECK" stream "$BUS" packets "$CAP" --wait 20 || fail "stream packets"
"$SPATE" log export "$DIR/bus.yaml" packets --pcapng "$DIR/ring.pcapng" >/dev/null || fail "export"
check_export "$DIR/ring.pcapng"
# spate top shows the pipeline live: both consumers and the source.
"$SPATE" top "$BUS" --iterations 1 >"$DIR/top.out" 2>&1 || fail "spate top: $(cat "$DIR/top.out")"
grep -q flowmon "$DIR/top.out" && grep -q flow-log "$DIR/top.out" || fail "spate top: $(cat "$DIR/top.out")"
sleep 1.5 # a flush of flowmon: flow records for every flow (and the source's counters)
# The source's counters in the counters region (spate stat --json), where
# this build's stat shows sources.
"$SPATE" stat "$BUS" --json >"$DIR/stat.json" 2>&1 || fail "spate stat: $(cat "$DIR/stat.json")"
if grep -q '"sources"' "$DIR/stat.json"; then
	tr -d ' \n' <"$DIR/stat.json" | grep -q "\"rx_packets\":$N," ||
		fail "spate stat: the source did not count $N packets: $(cat "$DIR/stat.json")"
	tr -d ' \n' <"$DIR/stat.json" | grep -q '"q0_drops":0,' || fail "spate stat: drops counted"
fi
stop_engine
grep -q "queue 0: $N packets, [0-9]* bytes, 0 dropped" "$DIR/run.log" ||
	fail "the source did not count $N packets and no drop"
# The flow records in the file sink account for every packet, and the
# iperf3 UDP flow is one flow, both directions.
total=$(grep -o '"new_packets":[0-9]*' "$DIR/flows.shard0" | awk -F: '{s += $2} END {print s + 0}')
[ "$total" = "$N" ] || fail "flow records count $total packets, the capture $N"
grep -q '"flow":"udp 10.213.0.1:[0-9]* 10.213.0.2:5201"' "$DIR/flows.shard0" ||
	fail "no flow record of the iperf3 UDP flow: $(head -3 "$DIR/flows.shard0")"
echo "OK: tcpreplay --topspeed of $N frames through net_af_packet into the appliance:" \
	"every frame in the stream, none dropped, $(wc -l <"$DIR/flows.shard0") flow record(s)" \
	"accounting for all; tcpreplay: $(grep -o 'Rated: .*' "$DIR/tcpreplay.out" | head -1)"
exit 0
