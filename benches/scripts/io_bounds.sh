#!/usr/bin/env bash
# Peak memory of the inputs keyvault must not read whole (a measurement, not a test;
# tests/io_contract.rs checks the same bounds on smaller inputs):
#   - verify with a 300 MB signature file and with /dev/zero as the signature;
#   - --json decrypt of a 1 GiB envelope (refused from its size), and of the same
#     envelope through a pipe (refused when the output passes 16 MiB);
#   - Fernet decrypt of a 2 GiB + 1 byte file (refused from its size), and of 2 GiB + 1
#     bytes through a pipe (read up to the limit, never past it).
# Each line: the case, its exit code, its peak RSS (GNU time's "Maximum resident set
# size") and its wall time.
#
# Usage: benches/scripts/io_bounds.sh   (needs /usr/bin/time, bc and about 1.3 GB of free disk;
# KV=path/to/keyvault to measure another build than target/release)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
if [[ -z "${KV:-}" ]]; then
    echo "building (cargo build --release) ..." >&2
    cargo build --release --quiet
    KV=$root/target/release/keyvault
fi
# shellcheck source=benches/scripts/throwaway_vault.sh
source benches/scripts/throwaway_vault.sh
throwaway_vault io-bounds

"$KV" init --kdf-memory 8 --kdf-iterations 1 --kdf-parallelism 1 --allow-weak-kdf \
    >/dev/null 2>&1
for t in fernet aes256-gcm ed25519 rsa-2048; do "$KV" gen alice --type "$t" >/dev/null; done
echo "a message" >"$work/msg"

# measure NAME CMD...: runs CMD under GNU time and prints one line.
measure() {
    local name=$1
    shift
    local start end code
    start=$(date +%s%N)
    set +e
    /usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err"
    code=$?
    set -e
    end=$(date +%s%N)
    local rss
    rss=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$work/time")
    printf '%-52s exit %s  peak RSS %7.1f MiB  %6.2f s\n' "$name" "$code" \
        "$(echo "$rss / 1024" | bc -l)" "$(echo "($end - $start) / 1000000000" | bc -l)"
}

head -c 300000000 /dev/zero >"$work/big.sig"
measure "verify, 300 MB signature file (ed25519)" \
    "$KV" verify alice ed25519 --signature "$work/big.sig" --in "$work/msg"
measure "verify, /dev/zero as the signature (rsa-2048)" \
    "$KV" verify alice rsa-2048 --signature /dev/zero --in "$work/msg"
rm "$work/big.sig"

head -c $((1024 * 1024 * 1024)) /dev/zero >"$work/plain"
"$KV" encrypt alice aes256-gcm --in "$work/plain" --out "$work/plain.kv"
rm "$work/plain"
measure "--json decrypt, 1 GiB envelope file" \
    "$KV" --json decrypt alice aes256-gcm --in "$work/plain.kv"
measure "--json decrypt, 1 GiB envelope through a pipe" \
    bash -c 'set -o pipefail; cat "$1" | "$0" --json decrypt alice aes256-gcm' "$KV" "$work/plain.kv"
rm "$work/plain.kv"

truncate -s $((2 * 1024 * 1024 * 1024 + 1)) "$work/huge"
measure "fernet decrypt, 2 GiB + 1 byte file" \
    "$KV" decrypt alice fernet --in "$work/huge"
rm "$work/huge"
measure "fernet decrypt, 2 GiB + 1 byte through a pipe" \
    bash -c 'set -o pipefail; head -c $((2 * 1024 * 1024 * 1024 + 1)) /dev/zero | "$0" decrypt alice fernet' "$KV"
