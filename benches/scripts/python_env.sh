# Sourced by the bench scripts (with $root set to the repository). Defines
# python_with_cryptography, which prints the path of a Python that has the
# `cryptography` package: KEYVAULT_TEST_PYTHON, or target/interop-venv, made as the
# interop tests make it (tests/util/python.rs: same lock, same marker) if missing.
python_with_cryptography() {
    if [[ -n "${KEYVAULT_TEST_PYTHON:-}" ]]; then
        echo "$KEYVAULT_TEST_PYTHON"
        return
    fi
    local venv=$root/target/interop-venv req=$root/tests/interop/requirements.txt
    mkdir -p "$root/target"
    (
        # The same lock and marker as tests/util/python.rs.
        flock 9
        if ! cmp -s "$venv/.ready" "$req" || [[ ! -x $venv/bin/python ]]; then
            echo "making $venv ..." >&2
            rm -rf "$venv"
            python3 -m venv "$venv" >&2
            "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
                --only-binary=:all: -r "$req" >&2
            cp "$req" "$venv/.ready.tmp" && mv "$venv/.ready.tmp" "$venv/.ready"
        fi
    ) 9>"$root/target/interop-venv.lock"
    echo "$venv/bin/python"
}
