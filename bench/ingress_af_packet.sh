#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# ingress_af_packet.sh - the appliance under tcpreplay: drops at a rate
# offered through a veth pair read with net_af_packet (issue 14, the
# "zero drops at 1 Mpps" target).
#
#   bench/ingress_af_packet.sh [options] SPATE FLOWMON_SO
#     --pps N          offered rate (tcpreplay --pps); 0: --topspeed (default 1000000)
#     --seconds S      how long tcpreplay sends (default 6; --duration)
#     --port-args A    the net_af_packet devargs after iface= (default: the
#                      example's, qpairs=1,blocksz=1048576,framesz=2048,framecnt=16384)
#     --source-args A  YAML lines of the source replacing the example's idle:
#                      and burst: lines, ';'-separated (e.g. "idle: busy;burst: 32")
#     --packets N --flows F --size B   the capture (bench/small_frames.py):
#                      N frames of B bytes over F flows (100000, 1000, 60)
#     --tx-cpu C       CPU tcpreplay is pinned to (default 0)
#     --tx-only        no engine: what tcpreplay alone offers into the veth
#                      (nothing reads the far end)
#     --engine-cpus L  the engine's placement cores and the source's cores
#                      (default 1: tcpreplay and the kernel's veth path on
#                      one CPU, the whole appliance on the other)
#
# What it does: a network namespace with one end of a veth pair; the
# appliance example (docs/examples/appliance/appliance.yaml: dpdk source ->
# packets (persisted) -> flowmon plugin -> flows -> file sink) with its port
# on the other end through net_af_packet; tcpreplay in the namespace sends
# the capture in a loop for --seconds; then it reads, once the source has
# stopped moving: what tcpreplay says it sent and at what rate, the veth's
# kernel RX count, the source's counters (`spate stat --json`: rx_packets,
# drops, errors, port_ipackets, port_imissed = the PMD's count of the packet
# socket's drops), and counts the kernel's drops as veth RX - port ipackets
# (frames the interface got that never reached the packet socket's ring or
# were dropped there). One JSON object on stdout. Root and namespaces
# needed; run it under /work/wt/cpu bench on the shared machine.
set -u
PPS=1000000 SECONDS_=6
PORT_ARGS= SRC_ARGS=
NPK=100000 FLOWS=1000 SIZE=60 TXCPU=0 ECPUS=1 TXONLY=
while [ $# -gt 2 ]; do
	case $1 in
	--tx-only) TXONLY=1; shift; continue ;;
	--pps) PPS=$2 ;;
	--seconds) SECONDS_=$2 ;;
	--port-args) PORT_ARGS=$2 ;;
	--source-args) SRC_ARGS=$2 ;;
	--packets) NPK=$2 ;;
	--flows) FLOWS=$2 ;;
	--size) SIZE=$2 ;;
	--tx-cpu) TXCPU=$2 ;;
	--engine-cpus) ECPUS=$2 ;;
	*) echo "unknown option $1" >&2; exit 2 ;;
	esac
	shift 2
done
[ $# -eq 2 ] || { sed -n '2,30p' "$0" >&2; exit 2; }
SPATE=$(realpath "$1") FLOWMON=$(realpath "$2")
HERE=$(cd "$(dirname "$0")" && pwd)
APPLIANCE=$HERE/../docs/examples/appliance/appliance.yaml
[ "$(id -u)" -eq 0 ] || { echo "needs root (netns, veth)" >&2; exit 77; }
for t in ip tcpreplay python3 taskset; do
	command -v $t >/dev/null || { echo "$t is missing" >&2; exit 77; }
done

ID=$$ NS=spbi$$ VR=spbr$$ VS=spbs$$ BUS=bafp$$
DIR=$(mktemp -d /tmp/spate-bench-afp-XXXXXX)
ENGINE=
cleanup() {
	[ -n "$ENGINE" ] && kill "$ENGINE" 2>/dev/null && wait "$ENGINE" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	ip link del "$VS" 2>/dev/null
	rm -f /dev/shm/spate."$BUS".* /dev/hugepages/spate."$BUS".* 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
die() { echo "ingress_af_packet: $*" >&2; [ -f "$DIR/run.log" ] && tail -20 "$DIR/run.log" >&2; exit 1; }

python3 "$HERE/small_frames.py" "$DIR/small.pcap" --packets "$NPK" --flows "$FLOWS" --size "$SIZE" ||
	die "capture"
ip netns add "$NS" || exit 77
ip link add "$VR" type veth peer name "$VS" || exit 77
ip link set "$VR" netns "$NS"
ip netns exec "$NS" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
sysctl -qw "net.ipv6.conf.$VS.disable_ipv6=1" 2>/dev/null
ip netns exec "$NS" ip link set "$VR" up
ip link set "$VS" up

if [ -n "$TXONLY" ]; then
	if [ "$PPS" = 0 ]; then RATE=--topspeed; else RATE=--pps=$PPS; fi
	V0=$(cat "/sys/class/net/$VS/statistics/rx_packets")
	ip netns exec "$NS" taskset -c "$TXCPU" tcpreplay $RATE --preload-pcap --loop=100000 \
		--duration="$SECONDS_" -i "$VR" "$DIR/small.pcap" >"$DIR/tcpreplay.out" 2>&1
	sent=$(grep -o 'Successful packets: *[0-9]*' "$DIR/tcpreplay.out" | grep -o '[0-9]*$')
	rated=$(grep -o 'Rated: .*' "$DIR/tcpreplay.out" | head -1 | grep -o '[0-9.]* pps' | cut -d' ' -f1)
	echo "{\"bench\": \"ingress_af_packet\", \"mode\": \"tx_only\", \"time_utc\": \"$(date -u +%FT%TZ)\"," \
		"\"offered\": \"${RATE#--}\", \"tcpreplay_sent\": ${sent:-0}, \"tcpreplay_rated_pps\": ${rated:-0}," \
		"\"veth_rx_packets\": $(( $(cat "/sys/class/net/$VS/statistics/rx_packets") - V0 ))}"
	exit 0
fi

# The appliance example as it is, but for bus, directories, plugin, the
# port's interface, the CPUs, and what --port-args/--source-args replace.
PORTLINE=$(grep -o '^    port: net_af_packet0,iface=eth1,.*' "$APPLIANCE" | sed 's/ *#.*//')
[ -n "$PORTLINE" ] || die "the example's port line changed: update this script"
[ -n "$PORT_ARGS" ] || PORT_ARGS=${PORTLINE#*iface=eth1,}
DEL=()
[ -z "$SRC_ARGS" ] || DEL=(-e "/^    idle: /d" -e "/^    burst: /d")
sed -e "s|^bus: appliance|bus: $BUS|" -e "s|/tmp/spate/appliance|$DIR|g" \
	-e "s|plugin: ./flowmon.so|plugin: $FLOWMON|" \
	-e "s|^    port: net_af_packet0,iface=eth1,.*|    port: net_af_packet_b$ID,iface=$VS,$PORT_ARGS|" \
	"${DEL[@]}" "$APPLIANCE" >"$DIR/bus.yaml"
[ -z "$SRC_ARGS" ] || printf '%s' "$SRC_ARGS" | tr ';' '\n' | sed -e 's/^ *//' -e 's/^/    /' >>"$DIR/bus.yaml"
SRC_ARGS=${SRC_ARGS:-$(grep -E '^    (idle|burst): ' "$APPLIANCE" | sed -e 's/ *#.*//' -e 's/^ *//' | paste -sd';')}
printf '    cores: [%s]\nplacement:\n  cores: [%s]\n' "$ECPUS" "$ECPUS" >>"$DIR/bus.yaml"
grep -q "iface=$VS" "$DIR/bus.yaml" || die "the example's port line changed: update this script"
"$SPATE" run "$DIR/bus.yaml" >"$DIR/run.log" 2>&1 &
ENGINE=$!
for _ in $(seq 400); do grep -q "source wire: dpdk port" "$DIR/run.log" && break; sleep 0.05; done
grep -q "source wire: dpdk port" "$DIR/run.log" || die "the engine did not start its source"
sleep 1
stat_get() { # NAME: the source's counter from spate stat --json
	tr -d ' \n' <"$DIR/stat.json" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2
}
veth_rx() { cat "/sys/class/net/$VS/statistics/rx_packets"; }
veth_drop() { cat "/sys/class/net/$VS/statistics/rx_dropped"; }
"$SPATE" stat "$BUS" --json >"$DIR/stat.json" 2>&1 || die "spate stat"
RX0=$(stat_get rx_packets) P0=$(stat_get port_ipackets) V0=$(veth_rx) VD0=$(veth_drop)
SN0=$(awk '{print $2}' /proc/net/softnet_stat | while read -r h; do echo $((16#$h)); done |
	awk '{s += $1} END {print s + 0}')

if [ "$PPS" = 0 ]; then RATE=--topspeed; else RATE=--pps=$PPS; fi
ip netns exec "$NS" taskset -c "$TXCPU" tcpreplay $RATE --preload-pcap --loop=100000 \
	--duration="$SECONDS_" -i "$VR" "$DIR/small.pcap" >"$DIR/tcpreplay.out" 2>&1
# Until the source stops moving (the rings drain into it).
last=-1
for _ in $(seq 50); do
	sleep 0.3
	"$SPATE" stat "$BUS" --json >"$DIR/stat.json" 2>&1 || die "spate stat"
	cur=$(stat_get port_ipackets)
	[ "$cur" = "$last" ] && break
	last=$cur
done
sleep 1.2 # a flowmon flush
"$SPATE" stat "$BUS" --json >"$DIR/stat.json" 2>&1 || die "spate stat"
SN1=$(awk '{print $2}' /proc/net/softnet_stat | while read -r h; do echo $((16#$h)); done |
	awk '{s += $1} END {print s + 0}')
kill -INT "$ENGINE"; wait "$ENGINE"; ENGINE=
sent=$(grep -o 'Successful packets: *[0-9]*' "$DIR/tcpreplay.out" | grep -o '[0-9]*$')
failed=$(grep -o 'Failed packets: *[0-9]*' "$DIR/tcpreplay.out" | grep -o '[0-9]*$')
rated=$(grep -o 'Rated: .*' "$DIR/tcpreplay.out" | head -1 | grep -o '[0-9.]* pps' | cut -d' ' -f1)
elapsed=$(grep -o 'sent in [0-9.]* seconds' "$DIR/tcpreplay.out" | grep -o '[0-9.]*')
[ -n "$sent" ] || die "tcpreplay: $(cat "$DIR/tcpreplay.out")"
vrx=$(( $(veth_rx) - V0 ))
vdrop=$(( $(veth_drop) - VD0 ))
rx=$(( $(stat_get rx_packets) - RX0 ))
pip=$(( $(stat_get port_ipackets) - P0 ))
flow_pk=$(grep -o '"new_packets":[0-9]*' "$DIR/flows.shard0" 2>/dev/null | awk -F: '{s += $2} END {print s + 0}')
qline=$(grep -o 'queue 0: .*' "$DIR/run.log" | head -1)
cat <<EOF
{"bench": "ingress_af_packet", "time_utc": "$(date -u +%FT%TZ)",
 "offered": "${RATE#--}", "tcpreplay_sent": $sent, "tcpreplay_failed": ${failed:-0},
 "tcpreplay_seconds": ${elapsed:-0}, "tcpreplay_rated_pps": ${rated:-0},
 "frame_bytes": $SIZE, "flows": $FLOWS, "port_args": "$PORT_ARGS", "source_args": "$SRC_ARGS",
 "tx_cpu": $TXCPU, "engine_cpus": "$ECPUS",
 "veth_rx_packets": $vrx, "veth_rx_dropped": $vdrop, "softnet_dropped": $((SN1 - SN0)),
 "port_ipackets": $pip, "port_imissed": $(stat_get port_imissed), "port_ierrors": $(stat_get port_ierrors),
 "port_rx_nombuf": $(stat_get port_rx_nombuf),
 "kernel_drops": $((vrx - pip)),
 "source_rx_packets": $rx, "source_drops": $(stat_get drops), "source_errors": $(stat_get errors),
 "flowmon_packets": $flow_pk,
 "queue_log": "$qline",
 "zero_drop": $([ "$((vrx - pip))" -eq 0 ] && [ "$(stat_get drops)" -eq 0 ] &&
	[ "$(stat_get port_imissed)" -eq 0 ] && [ "$rx" -eq "$sent" ] && echo true || echo false)}
EOF
