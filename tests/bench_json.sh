#!/bin/sh
# The benchmarks' --json output keeps its documented schema, and
# `spate bench ring` reports spate and rte_ring side by side (when built with
# DPDK). Short runs: this checks the shape, not the speed.
# Usage: bench_json.sh SPATE JSON_CASES [IMPLS]
# IMPLS is spate,rte_ring by default; TSan builds pass "spate,bound": DPDK's
# ring uses barriers TSan cannot see, so it reports races in DPDK's own code.
# With "bound" in IMPLS, the bound case and spate's ratio to it must be there.
# Without rte_ring in IMPLS (TSan), bench ingress leaves DPDK's ring out too.
set -eu
spate=$1 check=$2 impls_wanted=${3:-spate,rte_ring}
fail() { echo "bench_json.sh: FAIL: $*" >&2; exit 1; }

ring=$("$spate" bench ring --record-size 64 --batch 32 --mode 1to1 --impl "$impls_wanted" --seconds 0.1 --repeat 1 --json) ||
	fail "bench ring --json"
impls=$(echo "$ring" | "$check" impl mode record_size batch records_per_sec p99_ns) ||
	fail "bench ring --json"
echo "$impls" | grep -qx spate || fail "bench ring: no spate case"
case ",$impls_wanted," in
*,rte_ring,*)
	if "$spate" bench ring --help | grep -q rte_ring && ! echo "$impls" | grep -qx rte_ring; then
		fail "bench ring: no rte_ring case beside spate"
	fi ;;
esac
case ",$impls_wanted," in
*,bound,*)
	echo "$impls" | grep -qx bound || fail "bench ring: no bound case"
	echo "$ring" | grep -q '"spate_vs_bound_by_regime"' || fail "bench ring: no spate_vs_bound_by_regime" ;;
esac
pipe=$("$spate" bench pipeline --seconds 0.2 --json) || fail "bench pipeline --json"
pimpls=$(echo "$pipe" | "$check" impl record_size batch records_per_sec p50_ns p99_ns p999_ns) ||
	fail "bench pipeline --json"
echo "$pimpls" | grep -qx ring_only || fail "bench pipeline: no ring_only case"
echo "$pipe" | grep -q '"pipeline_vs_ring_only"' || fail "bench pipeline: no pipeline_vs_ring_only"
echo "$pipe" | grep -q '"cross_core_rtt_ns"' || fail "bench pipeline: no cross_core_rtt_ns"
persist=$("$spate" bench persist --seconds 0.1 --no-fio --json) || fail "bench persist --json"
impls=$(echo "$persist" | "$check" impl durability record_size records_per_sec bytes_per_sec) ||
	fail "bench persist --json"
echo "$impls" | grep -qx raw || fail "bench persist: no raw case"
echo "$impls" | grep -qx spate || fail "bench persist: no spate case"
echo "$persist" | grep -q '"ratio_to_raw"' || fail "bench persist: no ratio_to_raw"
echo "$persist" | grep -q '"median_ratio_to_raw"' || fail "bench persist: no median_ratio_to_raw"
for c in raw_prealloc raw_extend log_only always_10pct fdatasync_bare; do
	echo "$persist" | grep -Eq "\"case\": ?\"$c\"" || fail "bench persist: no $c case"
done
echo "$persist" | grep -q '"always_10pct_vs_bare_p99"' || fail "bench persist: no always_10pct_vs_bare_p99"
echo "$persist" | grep -q '"cross_core_rtt_ns"' || fail "bench persist: no cross_core_rtt_ns"
# bench api starts its own spate run (and kinesalite when npm installed it):
# both impls' PutRecords and GetRecords cases, or spate's alone when it says
# kinesalite is not installed.
api=$("$spate" bench api --seconds 0.3 --runs 1 --connections 1 --records 50 --ring-size 4MiB --json) ||
	fail "bench api --json"
impls=$(echo "$api" | "$check" impl op records_per_sec requests_per_sec p50_ns p99_ns) ||
	fail "bench api --json"
[ "$(echo "$impls" | grep -cx spate)" = 2 ] || fail "bench api: not 2 spate cases"
if echo "$api" | grep -q '"kinesalite": "started'; then
	[ "$(echo "$impls" | grep -cx kinesalite)" = 2 ] || fail "bench api: kinesalite started, no cases"
	echo "$api" | grep -q '"ratio_vs_kinesalite"' || fail "bench api: no ratio_vs_kinesalite"
fi
fns=$("$spate" bench functions --records 20000 --runs 1 --json 2>/dev/null |
	"$check" impl runtime records_per_sec invocations_per_sec invoke_p50_ns invoke_p99_ns \
		cold_start_p50_ns) || fail "bench functions --json"
echo "$fns" | grep -qx inprocess || fail "bench functions: no inprocess case"
echo "$fns" | grep -qx isolated || fail "bench functions: no isolated case"
if command -v node >/dev/null || command -v python3 >/dev/null; then
	echo "$fns" | grep -qx function || fail "bench functions: no function case"
fi
if "$spate" bench --help 2>&1 | grep -q ingress; then
	# TSan builds: net_null only (net_memif's control channel races with
	# itself inside the PMD: close() in one DPDK thread, recvmsg() in another).
	# TSan builds also leave out the rte_ring hand-off case (DPDK's ring, as
	# in bench ring above).
	ports=net_null,net_memif iimpls=rx_burst,spate,ring_only,rte_ring
	case ",$impls_wanted," in
	*,rte_ring,*) ;;
	*) ports=net_null iimpls=rx_burst,spate,ring_only ;;
	esac
	ingress=$("$spate" bench ingress --ports $ports --impls $iimpls --seconds 0.1 --repeat 1 --json) ||
		fail "bench ingress --json"
	impls=$(echo "$ingress" | "$check" impl port frame_size packets_per_sec drops) ||
		fail "bench ingress --json"
	echo "$impls" | grep -qx spate || fail "bench ingress: no spate case"
	echo "$impls" | grep -qx rx_burst || fail "bench ingress: no rx_burst case"
	[ $ports = net_null ] || echo "$ingress" | grep -q '"port": *"net_memif"' ||
		fail "bench ingress: no net_memif case"
fi
echo "bench_json.sh: ring, pipeline, persist, api, functions and ingress --json schemas OK"
