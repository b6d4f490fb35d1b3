# Sourced by the NATS bridge tests (nats_bridge.sh, nats_auth.sh), which set
# spate (the binary), dir (their temporary directory) and the array pids
# (killed by their cleanup).
#
# start_bus NAME YAML: `spate run $dir/YAML` in the background, its log in
# $dir/NAME.log, its pid in pid_NAME and in pids; returns once the bus has
# opened its stream `orders`, fails the test if it does not.
start_bus() {
	"$spate" run "$dir/$2" >>"$dir/$1.log" 2>&1 &
	pids+=("$!")
	eval "pid_$1=$!"
	for _ in $(seq 1 200); do
		grep -q "stream orders:" "$dir/$1.log" 2>/dev/null && return 0
		kill -0 "$!" 2>/dev/null || break
		sleep 0.05
	done
	echo "FAIL: bus $1 did not start"; tail -n 20 "$dir/$1.log"; exit 1
}
