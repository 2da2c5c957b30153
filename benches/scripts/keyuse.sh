#!/usr/bin/env bash
# Key-use numbers through the real binary (a benchmark, not a test):
#   - MB/s (10^6 bytes per second) of one-shot `encrypt` and `decrypt` of a 256 MiB file
#     from /dev/urandom, for fernet, aes256-gcm and chacha20-poly1305, beside Python
#     cryptography's Fernet on the same file; wall time of the whole process (start,
#     vault open, read, crypt, write) via `date +%s%N`;
#   - peak RSS of each of them (the AEAD cases must stay under 64 MiB: they stream;
#     Fernet is one token per message and holds it whole);
#   - sign and verify operations per second for rsa-2048 and ed25519 through the agent,
#     as OPS separate CLI calls each (so a process start per operation is included).
# The library-level numbers (no process, no agent) are `cargo bench --bench keyuse`.
#
# Usage: benches/scripts/keyuse.sh            (SIZE_MIB=256 OPS=200 by default; both overridable)
# Uses a throwaway vault in a temp dir with a fast KDF, and its own agent socket dir;
# the passphrase comes from KEYVAULT_PASSPHRASE (fine for a throwaway vault only).
# Python comes from KEYVAULT_TEST_PYTHON, or target/interop-venv (made as the interop
# tests make it, from tests/interop/requirements.txt, if it is not there yet).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
SIZE_MIB=${SIZE_MIB:-256}
OPS=${OPS:-200}
RSS_LIMIT_MIB=64

echo "building (cargo build --release) ..." >&2
cargo build --release --quiet
KV=$root/target/release/keyvault

# --- Python with cryptography -------------------------------------------------------
source "$root/benches/scripts/python_env.sh"
PY=$(python_with_cryptography)

# --- a throwaway vault ----------------------------------------------------------------
source "$PWD/benches/scripts/throwaway_vault.sh"
throwaway_vault bench

"$KV" init --kdf-memory 1 --kdf-iterations 1 --kdf-parallelism 1 --allow-weak-kdf \
    >/dev/null 2>&1
for t in fernet aes256-gcm chacha20-poly1305 rsa-2048 ed25519; do
    "$KV" gen bench --type "$t" >/dev/null
done
"$KV" export bench fernet --out "$work/fernet.key"

echo "writing a ${SIZE_MIB} MiB file from /dev/urandom ..." >&2
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$work/in.bin"
bytes=$(stat -c %s "$work/in.bin")

# --- measuring ------------------------------------------------------------------------
now_ns() { date +%s%N; }

# Peak RSS (KiB) of a command, into the file $1; the command follows.
if [[ -x /usr/bin/time ]]; then
    peak_rss() {
        local out=$1
        shift
        /usr/bin/time -f '%M' -o "$out" "$@"
    }
    rss_tool="/usr/bin/time (max RSS)"
else
    # getrusage(RUSAGE_CHILDREN).ru_maxrss after wait4: the same number GNU time prints.
    peak_rss() {
        local out=$1
        shift
        python3 - "$out" "$@" <<'EOF'
import resource, subprocess, sys
rc = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(rc)
EOF
    }
    rss_tool="getrusage(RUSAGE_CHILDREN) ru_maxrss"
fi

rows=()
over_limit=()
# run LABEL CHECK_RSS COMMAND...: times one command, records MB/s and peak RSS.
run() {
    local label=$1 check=$2
    shift 2
    local t0 t1 rss
    sync
    t0=$(now_ns)
    peak_rss "$work/rss" "$@"
    t1=$(now_ns)
    rss=$(tail -n 1 "$work/rss")
    local secs mbs rss_mib
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    mbs=$(awk -v n="$bytes" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) / 1e6 }')
    rss_mib=$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')
    rows+=("$(printf '%-44s %9s %9s %12s' "$label" "$mbs" "$secs" "$rss_mib")")
    if [[ $check == limit ]] && awk -v k="$rss" -v l="$RSS_LIMIT_MIB" 'BEGIN { exit !(k >= l * 1024) }'; then
        over_limit+=("$label: ${rss_mib} MiB")
    fi
}

for t in fernet aes256-gcm chacha20-poly1305; do
    check=info
    [[ $t == fernet ]] || check=limit
    echo "keyvault $t ..." >&2
    run "keyvault encrypt $t" "$check" "$KV" encrypt bench "$t" --in "$work/in.bin" --out "$work/$t.enc"
    run "keyvault decrypt $t" "$check" "$KV" decrypt bench "$t" --in "$work/$t.enc" --out "$work/$t.dec"
    cmp -s "$work/in.bin" "$work/$t.dec" || { echo "$t: round trip differs" >&2; exit 1; }
    rm -f "$work/$t.enc" "$work/$t.dec"
done

echo "python cryptography Fernet ..." >&2
run "python cryptography Fernet encrypt" info "$PY" "$root/benches/scripts/python_fernet.py" encrypt "$work/fernet.key" "$work/in.bin" "$work/py.tok"
run "python cryptography Fernet decrypt" info "$PY" "$root/benches/scripts/python_fernet.py" decrypt "$work/fernet.key" "$work/py.tok" "$work/py.dec"
cmp -s "$work/in.bin" "$work/py.dec" || { echo "python: round trip differs" >&2; exit 1; }
# Python's big token opens with keyvault too (the same key).
"$KV" decrypt bench fernet --in "$work/py.tok" --out "$work/py.kv.dec"
cmp -s "$work/in.bin" "$work/py.kv.dec" || { echo "python's token: keyvault's plaintext differs" >&2; exit 1; }
rm -f "$work/py.tok" "$work/py.dec" "$work/py.kv.dec" "$work/in.bin"

# --- signatures through the agent -----------------------------------------------------
"$KV" unlock --timeout 10m >/dev/null
head -c 1024 /dev/urandom >"$work/msg"
sig_rows=()
for t in rsa-2048 ed25519; do
    echo "sign/verify $t x $OPS through the agent ..." >&2
    "$KV" sign bench "$t" --in "$work/msg" >"$work/$t.sig"
    t0=$(now_ns)
    for ((i = 0; i < OPS; i++)); do
        "$KV" sign bench "$t" --in "$work/msg" >/dev/null
    done
    t1=$(now_ns)
    for ((i = 0; i < OPS; i++)); do
        "$KV" verify bench "$t" --signature "$work/$t.sig" --in "$work/msg" >/dev/null
    done
    t2=$(now_ns)
    sign_ops=$(awk -v n="$OPS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
    verify_ops=$(awk -v n="$OPS" -v a="$t1" -v b="$t2" 'BEGIN { printf "%.0f", n / ((b - a) / 1e9) }')
    sig_rows+=("$(printf '%-44s %9s %9s' "$t (agent, one CLI call per op)" "$sign_ops" "$verify_ops")")
done
"$KV" lock >/dev/null

# --- report ---------------------------------------------------------------------------
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
echo
echo "keyvault $("$KV" --version | awk '{ print $2 }') key use, $(nproc) CPU(s) ($cpu), $(uname -sr)"
echo "file: ${SIZE_MIB} MiB from /dev/urandom; one-shot CLI (vault opened per command, fast KDF);"
echo "MB/s = 10^6 bytes/s of the plaintext over the whole process's wall time; peak RSS by $rss_tool"
echo
printf '%-44s %9s %9s %12s\n' "operation" "MB/s" "seconds" "peak RSS MiB"
printf '%s\n' "${rows[@]}"
echo
printf '%-44s %9s %9s\n' "signatures of 1 KiB" "sign/s" "verify/s"
printf '%s\n' "${sig_rows[@]}"
echo
if ((${#over_limit[@]})); then
    echo "FAIL: AEAD peak RSS at or over ${RSS_LIMIT_MIB} MiB: ${over_limit[*]}"
    exit 1
fi
echo "ok: every AEAD case stayed under ${RSS_LIMIT_MIB} MiB peak RSS"
