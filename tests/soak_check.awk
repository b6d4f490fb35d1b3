# soak_check.awk - the verdict of tests/soak.sh and tests/faults.sh: are the
# acknowledged records there, once, in per-key order?
#
# Input files are of two kinds, chosen by command-line assignments between
# them (awk -f soak_check.awk kind=ack A1 A2 kind=data fld=5 D1 D2):
#   kind=ack   soak_producer ack files: "<key>,<seq> <shard> <shard-seq>"
#   kind=data  what a reader saw, one record per line, the payload
#              "<key>,<seq>" (maybe followed by " xxx" padding) in field
#              `fld`: 5 for `spate log dump` and `spate tail`, 2 for the
#              `file` plugin with prefix: seq. Lines whose payload is not a
#              soak record (failure envelopes, other text) are ignored.
# A data file must list each shard's records in the order read; a key lives
# on one shard (one lane), so per-key order is checked across all files.
#
# Variables: mode=exact (a log: every record at most once) or mode=atleast
# (a consumer: duplicates counted but allowed); label=TEXT for the output.
# Output, one line:
#   <label>: acked A found F missing M dup D misorder O records R [examples]
# where misorder counts first sightings of a (key, seq) below an earlier
# first sighting of the same key, and dup counts extra sightings of any
# record. Exit status 0 always; the caller reads the numbers.
kind == "ack" {
	if (!($1 in acked)) { acked[$1] = 1; nack++ }
	next
}
kind == "data" {
	p = $fld
	if (p !~ /^[A-Za-z0-9_-]+\.[0-9]+\.[0-9]+,[0-9]+$/)
		next
	records++
	if (++seen[p] > 1) {
		dup++
		if (dup <= 3) dupex = dupex " " p
		next
	}
	i = index(p, ",")
	k = substr(p, 1, i - 1)
	s = substr(p, i + 1) + 0
	if ((k in last) && s <= last[k]) {
		misorder++
		if (misorder <= 3) misex = misex " " p "<after " k "," last[k] ">"
	}
	last[k] = s
	next
}
END {
	for (a in acked) {
		if (a in seen)
			found++
		else {
			missing++
			if (missing <= 3) missex = missex " " a
		}
	}
	printf "%s: acked %d found %d missing %d dup %d misorder %d records %d", label, nack + 0,
	       found + 0, missing + 0, dup + 0, misorder + 0, records + 0
	if (missex != "") printf " | missing e.g.%s", missex
	if (dupex != "") printf " | dup e.g.%s", dupex
	if (misex != "") printf " | misorder e.g.%s", misex
	printf "\n"
}
