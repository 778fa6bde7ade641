#!/bin/sh
# Run every libFuzzer target for a bounded time; fail if any finds a crash,
# a leak, a timeout or an out-of-memory input.
#
# usage: tests/fuzz/run-bounded.sh BUILD_DIR SECONDS
#        tests/fuzz/run-bounded.sh --targets   (the ninja targets it runs)
#
# BUILD_DIR is configured with CC=clang -Dfuzz=true (and -Dsanitize=true).
# Each target starts from its checked-in corpus (tests/fuzz/corpus/<p>/),
# which is only read: new inputs go to a scratch folder. Crashing inputs are
# kept in BUILD_DIR/fuzz-artifacts/<p>/; add them to the corpus as
# regress-<what> so the replay tests keep them fixed.
set -u
parsers="gguf safetensors spm hfconfig qlayout recipe archive tokjson"
if [ $# -eq 1 ] && [ "$1" = --targets ]; then
	for p in $parsers; do
		echo "tests/fuzz/fuzz_$p"
	done
	exit 0
fi
if [ $# -ne 2 ]; then
	echo "usage: $0 BUILD_DIR SECONDS | --targets" >&2
	exit 2
fi
build=$1
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
status=0
for p in $parsers; do
	bin=$build/tests/fuzz/fuzz_$p
	if [ ! -x "$bin" ]; then
		echo "$bin: missing (configure with CC=clang -Dfuzz=true)" >&2
		exit 2
	fi
	work=$(mktemp -d "${TMPDIR:-/tmp}/qp-fuzz-$p.XXXXXX")
	arts=$build/fuzz-artifacts/$p
	mkdir -p "$work/corpus" "$arts"
	dict=
	if [ -f "$here/$p.dict" ]; then
		dict=-dict=$here/$p.dict
	fi
	start=$(date +%s)
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
		-print_final_stats=1 -artifact_prefix="$arts/" $dict \
		"$work/corpus" "$here/corpus/$p" >"$work/log" 2>&1
	rc=$?
	took=$(( $(date +%s) - start ))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -n 1)
	if [ $rc -ne 0 ]; then
		echo "fuzz_$p: FAILED after ${took}s (exit $rc); inputs in $arts:"
		ls "$arts"
		grep -E 'ERROR|SUMMARY|runtime error' "$work/log" | head -n 20
		status=1
	else
		echo "fuzz_$p: ok, ${took}s, ${runs:-?} runs, ${cov:-cov: ?}"
	fi
	rm -rf "$work"
done
exit $status
