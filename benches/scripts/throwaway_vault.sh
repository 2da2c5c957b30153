# Sourced by the bench scripts (with $KV set to the keyvault binary). Defines
# throwaway_vault NAME: a temp dir for a vault and its own agent socket dir, exported as
# KEYVAULT_PATH and XDG_RUNTIME_DIR with the passphrase in KEYVAULT_PASSPHRASE (fine
# for a throwaway vault only), locked and removed when the script exits. Sets $work.
throwaway_vault() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/keyvault-$1.XXXXXX")
    export KEYVAULT_PATH=$work/vault
    export KEYVAULT_PASSPHRASE="bench-only passphrase"
    export XDG_RUNTIME_DIR=$work/run
    mkdir -m 700 "$XDG_RUNTIME_DIR"
    unset KEYVAULT_PASSPHRASE_FILE
    trap '"$KV" lock >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
}
