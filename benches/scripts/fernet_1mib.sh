#!/usr/bin/env bash
# Fernet on 1 MiB in memory, keyvault's library against Python cryptography, one after
# the other in the same run (target: ">= 2x Python"; a benchmark, it never fails on a
# number). keyvault: `cargo bench --bench keyuse -- fernet_1MiB` (Vault::encrypt_message
# and decrypt_message on a fernet key); Python: benches/scripts/python_fernet_1mib.py (median of
# RUNS, default 200).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
source "$root/benches/scripts/python_env.sh"
PY=$(python_with_cryptography)

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --quiet --bench keyuse -- fernet_1MiB 2>/dev/null | grep -E "^fernet_1MiB|time:|thrpt:"
"$PY" "$root/benches/scripts/python_fernet_1mib.py" "${RUNS:-200}"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
