#!/usr/bin/env bash
# The agent's resident memory (target: "agent RSS after unlock, idle <= 16 MiB") and
# the time of `keyvault unlock` at the default KDF against the KDF alone, through the
# real binary (a benchmark: it prints numbers and never fails on one).
#   - VmRSS of the agent right after `unlock` (default KDF: m=64 MiB, t=3, p=4) and
#     idle 3 s, then after N one-key `gen`s through it and a full `list` (N=1000);
#   - wall time of `keyvault unlock` (process start, KDF, the agent's start), median of
#     RUNS (5); `cargo bench --bench scale` reports the KDF alone and `Vault::open`;
#   - with KEYS=100000 (default 0: skipped), a vault of KEYS Fernet keys made by the
#     example `fill_vault` (benches/scripts/fill_vault.rs; fast KDF): the agent's VmRSS after
#     `unlock` and 6 s idle (its upkeep reads the records' size meanwhile), after a full
#     `list --json`, after 1,000 `export`s of random keys, and its peak (VmHWM).
# KEYVAULT_BIN=path measures that binary instead of building one.
# Uses a throwaway vault in a temp dir and its own agent socket dir; the passphrase
# comes from KEYVAULT_PASSPHRASE (fine for a throwaway vault only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
N=${N:-1000}
RUNS=${RUNS:-5}
KEYS=${KEYS:-0}
if [[ -n ${KEYVAULT_BIN:-} ]]; then
    # A binary built elsewhere (e.g. another commit, to compare two builds).
    KV=$(realpath "$KEYVAULT_BIN")
else
    echo "building (cargo build --release) ..." >&2
    cargo build --release --quiet
    KV=${CARGO_TARGET_DIR:-$PWD/target}/release/keyvault
fi

source "$PWD/benches/scripts/throwaway_vault.sh"
throwaway_vault rss

"$KV" init >/dev/null
"$KV" gen alice >/dev/null

ms_now() { date +%s%N; }
times=()
for _ in $(seq "$RUNS"); do
    "$KV" lock >/dev/null 2>&1 || true
    t0=$(ms_now)
    "$KV" unlock >/dev/null
    t1=$(ms_now)
    times+=("$(( (t1 - t0) / 1000 ))")
done
median_us=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

pid=$("$KV" --json status | python3 -c 'import json, sys; print(json.load(sys.stdin)["agent_pid"])')
rss() { awk '/^VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status"; }
sleep 3
after_unlock=$(rss)
for i in $(seq "$N"); do "$KV" gen "user$i" >/dev/null; done
"$KV" list >/dev/null
sleep 3
after_use=$(rss)

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "keyvault unlock (default KDF, process + KDF + agent start): median $(awk -v u="$median_us" 'BEGIN {printf "%.1f ms", u / 1000}') of $RUNS"
echo "agent VmRSS: $after_unlock after unlock, idle; $after_use after $N gens and a full list"

if ((KEYS > 0)); then
    echo "building the example fill_vault ..." >&2
    cargo build --release --quiet --example fill_vault
    big=$work/big
    "$KV" lock >/dev/null
    "${CARGO_TARGET_DIR:-$PWD/target}/release/examples/fill_vault" "$big" "$KEYS"
    export KEYVAULT_PATH=$big KEYVAULT_PASSPHRASE="bench-only passphrase"
    "$KV" unlock >/dev/null
    pid=$("$KV" --json status | python3 -c 'import json, sys; print(json.load(sys.stdin)["agent_pid"])')
    sleep 6
    big_unlock=$(rss)
    t0=$(ms_now)
    "$KV" list --json >/dev/null
    t1=$(ms_now)
    sleep 2
    big_list=$(rss)
    t2=$(ms_now)
    for i in $(seq 1000); do
        "$KV" export "u$((RANDOM % (KEYS / 10)))" "k$((RANDOM % 10))" >/dev/null
    done
    t3=$(ms_now)
    sleep 2
    big_gets=$(rss)
    peak=$(awk '/^VmHWM/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")
    echo "agent VmRSS, $KEYS-key vault: $big_unlock after unlock, idle; $big_list after a full list --json ($(( (t1 - t0) / 1000000 )) ms); $big_gets after 1000 exports ($(( (t3 - t2) / 1000000 )) ms); peak $peak"
    "$KV" lock >/dev/null
fi
