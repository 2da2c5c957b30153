#!/usr/bin/env bash
# Times the migration of a large format-3 vault to the current format, and `passwd` on
# the migrated vault (default and fast KDF parameters).
#
# The format-3 vault is made by the library of the last keyvault that wrote format 3
# (commit 9f31e43 of this repository), built from git history in a temporary worktree
# with benches/scripts/make_v3_vault.rs as an example program. Needs the repository's history.
#
#   benches/scripts/migration.sh [KEYS]      (default 100000)
#
# Prints the wall time of: the first command on the old vault (pre-migration backup +
# migration + `status`), a second command (no migration), passwd with the vault's fast
# KDF, and the vault's size before and after.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
keys=${1:-100000}
v3_commit=9f31e43

cargo build --release --locked --quiet
KV=$PWD/target/release/keyvault
work=$(mktemp -d "${TMPDIR:-/tmp}/keyvault-migration.XXXXXX")
src=$work/v3src
trap 'git worktree remove --force "$src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --quiet --detach "$src" "$v3_commit"
mkdir -p "$src/examples"
cp benches/scripts/make_v3_vault.rs "$src/examples/make_v3_vault.rs"
echo "building the format-3 library ($v3_commit)…"
(cd "$src" && CARGO_TARGET_DIR=${V3_TARGET_DIR:-$work/v3target} \
    cargo build --release --quiet --example make_v3_vault)
maker=${V3_TARGET_DIR:-$work/v3target}/release/examples/make_v3_vault

export XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work/run
mkdir -m 700 "$XDG_RUNTIME_DIR"
export KEYVAULT_PASSPHRASE="bench-only passphrase"
vault=$work/vault
echo "making a format-3 vault of $keys keys…"
"$maker" "$vault" "$keys"
size_before=$(du -sb "$vault" | cut -f1)

seconds() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

echo "format before: $("$KV" --vault "$vault" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["format_version"])')"
first=$(seconds "$KV" --vault "$vault" list user000001)
second=$(seconds "$KV" --vault "$vault" list user000001)
size_after=$(du -sb "$vault" | cut -f1)
backup=$(ls "$work"/vault.pre-v4-backup-*.kvb)
echo "format after: $("$KV" --vault "$vault" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["format_version"])')"
printf 'new passphrase\n' > "$work/new-pass"
passwd=$(seconds "$KV" --vault "$vault" passwd --new-passphrase-file "$work/new-pass")
export KEYVAULT_PASSPHRASE="new passphrase"
check=$(seconds "$KV" --vault "$vault" check)
# With the default parameters (m=64 MiB, t=3, p=4): first onto them (one fast and one
# default derivation), then from them (two default derivations, the usual case).
printf 'third passphrase\n' > "$work/third-pass"
"$KV" --vault "$vault" passwd --kdf moderate --new-passphrase-file "$work/third-pass" >/dev/null
export KEYVAULT_PASSPHRASE="third passphrase"
passwd_default=$(seconds "$KV" --vault "$vault" passwd --new-passphrase-file "$work/new-pass")
echo
echo "keys:                                  $keys"
echo "first command (backup + migration):    ${first} s"
echo "second command (no migration):         ${second} s"
echo "passwd (fast KDF, header file only):   ${passwd} s"
echo "passwd (default KDF, two derivations): ${passwd_default} s"
echo "check after:                           ${check} s"
echo "vault before: ${size_before} bytes; after: ${size_after} bytes; pre-migration backup: $(stat -c %s "$backup") bytes"
