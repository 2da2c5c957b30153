#!/usr/bin/env bash
# keyvault's SSH agent socket against OpenSSH's ssh-agent holding the same keys, same
# run: the median wall time of `ssh-add -L` and of one `ssh-keygen -Y sign` (Ed25519 and
# RSA-3072, rsa-sha2-512) through each agent, over RUNS calls, and their ratio. Each
# call is a whole process (start, connect, ask, answer), as a user or git runs it.
#
# Usage: benches/scripts/ssh_agent.sh                (RUNS=50; KV=path/to/keyvault to skip the build)
# Needs ssh-add, ssh-keygen and ssh-agent (OpenSSH). Uses a throwaway vault with a fast
# KDF and its own agent socket dir; both agents are stopped when the script exits.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
RUNS=${RUNS:-50}

for tool in ssh-add ssh-keygen ssh-agent; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "benches/scripts/ssh_agent.sh needs $tool (OpenSSH): install openssh-client" >&2
        exit 2
    fi
done
if [[ -z "${KV:-}" ]]; then
    echo "building (cargo build --release) ..." >&2
    cargo build --release --quiet
    KV=${CARGO_TARGET_DIR:-$root/target}/release/keyvault
fi

source "$root/benches/scripts/throwaway_vault.sh"
throwaway_vault ssh
ssh_agent_pid=""
trap '"$KV" lock >/dev/null 2>&1 || true; [[ -n "$ssh_agent_pid" ]] && kill "$ssh_agent_pid" 2>/dev/null; rm -rf "$work"' EXIT

"$KV" init --kdf-memory 1 --kdf-iterations 1 --kdf-parallelism 1 --allow-weak-kdf >/dev/null 2>&1
"$KV" gen bench --type ed25519 --name laptop --ssh >/dev/null
"$KV" gen bench --type rsa-3072 --name deploy --ssh >/dev/null
for k in laptop deploy; do
    "$KV" export bench "$k" --format openssh --out "$work/$k" >/dev/null
    "$KV" export bench "$k" --public --format openssh --out "$work/$k.pub" >/dev/null
done
"$KV" unlock --timeout 30m >/dev/null
kv_sock=$("$KV" ssh socket)

openssh_sock=$work/ssh-agent.sock
eval "$(ssh-agent -s -a "$openssh_sock")" >/dev/null
ssh_agent_pid=$SSH_AGENT_PID
SSH_AUTH_SOCK=$openssh_sock ssh-add -q "$work/laptop" "$work/deploy" 2>/dev/null
head -c 4096 /dev/urandom >"$work/msg"

# The median of RUNS wall times (ms) of a command run with SSH_AUTH_SOCK=$1.
median_ms() {
    local sock=$1
    shift
    local i t0 t1
    for ((i = 0; i < RUNS; i++)); do
        t0=$(date +%s%N)
        SSH_AUTH_SOCK=$sock "$@" <"$work/msg" >/dev/null 2>&1
        t1=$(date +%s%N)
        echo $(((t1 - t0) / 1000))
    done | sort -n | awk '{ v[NR] = $1 } END { printf "%.2f", v[int((NR + 1) / 2)] / 1000 }'
}

echo "RUNS=$RUNS; $(ssh -V 2>&1 | head -1); keyvault $KV"
printf '%-34s %14s %14s %8s\n' "operation" "keyvault (ms)" "ssh-agent (ms)" "ratio"
row() {
    local name=$1
    shift
    local ours theirs
    ours=$(median_ms "$kv_sock" "$@")
    theirs=$(median_ms "$openssh_sock" "$@")
    printf '%-34s %14s %14s %8s\n' "$name" "$ours" "$theirs" \
        "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
}
# Each must work before it is timed.
SSH_AUTH_SOCK=$kv_sock ssh-add -L >/dev/null
SSH_AUTH_SOCK=$kv_sock ssh-keygen -Y sign -f "$work/laptop.pub" -n file <"$work/msg" >/dev/null 2>&1
row "ssh-add -L (2 keys)" ssh-add -L
row "ssh-keygen -Y sign (ed25519)" ssh-keygen -Y sign -f "$work/laptop.pub" -n file
row "ssh-keygen -Y sign (rsa-3072)" ssh-keygen -Y sign -f "$work/deploy.pub" -n file
