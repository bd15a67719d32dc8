#!/usr/bin/env bash
# Run every harness for a bounded time (default 60 s each). Usage: fuzz/run_all.sh [SECONDS]
# An input over the per-input caps (fuzz/common.py: 10 s of CPU, 1 GiB of peak-RSS growth) is a finding too.
# A finding makes libFuzzer exit non-zero and write crash-*/timeout-*/oom-* files into fuzz/findings/.
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-60}"
mkdir -p findings work/load work/codecs work/dataset logs
python make_corpus.py || exit 1
status=0
for harness in fuzz_load fuzz_container fuzz_info fuzz_codecs fuzz_dataset; do
  corpus=corpus/load; work=work/load
  if [ "$harness" = fuzz_codecs ]; then corpus=corpus/codecs; work=work/codecs; fi
  if [ "$harness" = fuzz_dataset ]; then corpus=corpus/dataset; work=work/dataset; fi
  python "$harness.py" "$work" "$corpus" -dict=nnc.dict -max_total_time="$SECONDS_EACH" \
    -artifact_prefix=findings/ -print_final_stats=1 > "logs/$harness.log" 2>&1
  rc=$?
  runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "logs/$harness.log" | grep -o "[0-9]*$" || echo "?")
  rss=$(grep -o "stat::peak_rss_mb: *[0-9]*" "logs/$harness.log" | grep -o "[0-9]*$" || echo "?")
  echo "$harness: ${SECONDS_EACH}s, $runs inputs, peak RSS ${rss} MB, exit $rc"
  if [ $rc -ne 0 ]; then
    echo "finding in $harness (see fuzz/findings/ and fuzz/logs/$harness.log):"
    grep -E -A 30 "Traceback|ERROR: libFuzzer" "logs/$harness.log" | head -60
    status=1
  fi
done
[ $status -eq 0 ] && echo "fuzzing: no findings"
exit $status
