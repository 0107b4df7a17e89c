#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 600), one after another,
# one libFuzzer job each, niced; then minimises each corpus in place. Logs: logs/<target>.log.
# Needs the nightly toolchain and cargo-fuzz (README.md).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${SECONDS_PER_TARGET:-600}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(topology lb_head acl dns rqlite_body sql)
mkdir -p logs
cargo +nightly fuzz build -a
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  # One libFuzzer process (no -jobs/-workers), niced; its output goes to logs/<target>.log.
  nice cargo +nightly fuzz run -a "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 \
    -print_final_stats=1 > "logs/$t.log" 2>&1 || echo "$t: stopped with a failure, see logs/$t.log"
  tail -n 25 "logs/$t.log" | grep -E '^#|stat::|Done|ERROR|panicked' || true
  nice cargo +nightly fuzz cmin -a "$t" "corpus/$t" > "logs/$t.cmin.log" 2>&1
  echo "$t corpus after cmin: $(ls "corpus/$t" | wc -l) files, $(du -sh "corpus/$t" | cut -f1)"
done
