#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 60) each, one after the other, and prints
# libFuzzer's final line per target. Logs go to fuzz/logs/<target>.log (not committed);
# the working corpus to fuzz/corpus/<target>/, seeded from fuzz/corpus_seed/<target>/.
# Needs cargo-fuzz (`cargo install --locked cargo-fuzz`); RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept the sanitizer flags cargo-fuzz passes.
#
#   bash fuzz/run_all.sh            # 60 s per target, ~7 minutes with the build
#   bash fuzz/run_all.sh 300 key_import envelope_reader
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(record_decode agent_protocol backup_reader key_import envelope_reader fernet_token ssh_agent_frame)
fi
export RUSTC_BOOTSTRAP=1
mkdir -p fuzz/logs
cargo fuzz build
status=0
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    if cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/corpus_seed/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
        >"fuzz/logs/$t.log" 2>&1; then
        verdict=ok
    else
        verdict="FAILED (see fuzz/logs/$t.log and fuzz/artifacts/$t/)"
        status=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/logs/$t.log" | tail -1 | awk '{print $2}')
    done_line=$(grep -E '^Done [0-9]+ runs' "fuzz/logs/$t.log" | tail -1 || true)
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "fuzz/logs/$t.log" | tail -1 | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/]*[a-zA-Z]*' || true)
    echo "$t: ${execs:-?} executions; $done_line; $cov; $verdict"
done
exit $status
