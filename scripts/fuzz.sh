#!/usr/bin/env bash
# Builds every fuzz target (fuzz/, cargo fuzz, nightly) and runs each for
# SECONDS (default 20): first the committed regressions
# (fuzz/regressions/<target>/, replayed on every run), then new inputs.
# Fails on any crash, hang (FUZZ_TIMEOUT s per input) or memory blow-up.
#   scripts/fuzz.sh 60            every target for a minute
#   FUZZ_TARGETS="jws dpop" scripts/fuzz.sh 600
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600   each target until 10 M
#                                             executions (or the hour)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-20}
timeout_s=${FUZZ_TIMEOUT:-10}
runs=${FUZZ_RUNS:+-runs=$FUZZ_RUNS}
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
cargo +nightly fuzz build -O
status=0
for t in $targets; do
  mkdir -p "corpus/$t" "regressions/$t"
  echo "fuzz: $t for ${secs}s"
  if ! cargo +nightly fuzz run -O "$t" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$secs" $runs -timeout="$timeout_s" -rss_limit_mb=2048 -max_len=4096 \
      -print_final_stats=1 2> "target/fuzz-$t.log"; then
    echo "fuzz: $t FAILED"; tail -40 "target/fuzz-$t.log"; status=1
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "target/fuzz-$t.log" | sed "s/^/fuzz: $t /" || true
done
exit $status
