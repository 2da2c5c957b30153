#!/usr/bin/env bash
# keyvault against the tools a user would pick instead, in one run. A
# benchmark, not a test: it never fails on a number (it exits non-zero only when a tool
# under measurement errors out, or keyvault cannot be built).
#
#   benches/scripts/compare.sh                          N_LIST="200 1000" REPS=100 SLOW_REPS=30
#   N_LIST="200" REPS=20 benches/scripts/compare.sh     a quick run
#   TOOLS="keyvault pass" benches/scripts/compare.sh    a subset (keyvault python pass age keepassxc)
#
# Phases: add one key, read one key, list N (each on a store holding N keys, for every N
# in N_LIST) and encrypt+decrypt 44 B (once). Every operation is timed per call, process
# start included, by benches/scripts/compare_timer.py (time.perf_counter_ns around
# subprocess.run). Peers missing from PATH are installed from Debian (apt-get update
# once, then apt-get install -y of the missing ones among pass gnupg age keepassxc); a
# peer that cannot be installed is skipped with a message. Set BENCH_NO_INSTALL=1 to
# skip installing. Python's cryptography comes from BENCH_PYTHON, target/interop-venv
# (made by the interop tests) or target/bench-venv (made here with pip).
#
# Everything runs in a temp dir: HOME, XDG_*, GNUPGHOME, PASSWORD_STORE_DIR and the
# keyvault vaults and agent sockets point into it, so no real user file is read or
# written. The table and the raw per-call samples are kept in target/bench-compare/.
# benches/README.md says what each phase does per tool and the caveats.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
N_LIST=${N_LIST:-"200 1000"}
REPS=${REPS:-100}
SLOW_REPS=${SLOW_REPS:-30}
WARMUP=${WARMUP:-2}
INPROC_REPS=${INPROC_REPS:-2000}
TOOLS=${TOOLS:-"keyvault python pass age keepassxc"}
started=$(date +%s)

log() { echo "[compare] $*" >&2; }
want_tool() { [[ " $TOOLS " == *" $1 "* ]]; }

for n in $N_LIST; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { log "N_LIST: not a positive integer: $n"; exit 2; }
done
for v in REPS SLOW_REPS INPROC_REPS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { log "$v: not a positive integer: ${!v}"; exit 2; }
done
[[ $WARMUP =~ ^[0-9]+$ ]] || { log "WARMUP: not a non-negative integer: $WARMUP"; exit 2; }

# --- keyvault ---------------------------------------------------------------------------
if [[ -n ${KEYVAULT_BIN:-} ]]; then
    # A binary built elsewhere (e.g. another commit, to compare two builds).
    KV=$(realpath "$KEYVAULT_BIN")
    [[ -x $KV ]] || { log "KEYVAULT_BIN: not an executable: $KEYVAULT_BIN"; exit 2; }
else
    log "building keyvault (cargo build --release --locked) ..."
    cargo build --release --locked --quiet
    KV=${CARGO_TARGET_DIR:-$root/target}/release/keyvault
fi

# --- peers from Debian ------------------------------------------------------------------
missing=()
want_tool pass && ! command -v gpg >/dev/null && missing+=(gnupg)
want_tool pass && ! command -v pass >/dev/null && missing+=(pass)
want_tool age && ! command -v age >/dev/null && missing+=(age)
want_tool keepassxc && ! command -v keepassxc-cli >/dev/null && missing+=(keepassxc)
if ((${#missing[@]})); then
    sudo=()
    if ((EUID != 0)); then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            log "not root and no password-less sudo: cannot install ${missing[*]}"
            BENCH_NO_INSTALL=1
        fi
    fi
    if [[ ${BENCH_NO_INSTALL:-0} == 1 ]]; then
        log "not installing: ${missing[*]} (those peers are skipped)"
    elif ! command -v apt-get >/dev/null; then
        log "no apt-get: cannot install ${missing[*]} (those peers are skipped)"
    else
        log "installing from Debian: ${missing[*]} ..."
        "${sudo[@]}" apt-get update -qq >&2 || log "apt-get update failed; trying the install anyway"
        installable=()
        for p in "${missing[@]}"; do
            cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
            if [[ -n $cand && $cand != "(none)" ]]; then
                installable+=("$p")
            else
                log "package $p is not available from apt: skipping that peer"
            fi
        done
        if ((${#installable[@]})); then
            if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq \
                "${installable[@]}" >&2; then
                # One at a time, so one broken package costs only its own peer.
                for p in "${installable[@]}"; do
                    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$p" >&2 ||
                        log "apt-get install $p failed: skipping that peer"
                done
            fi
        fi
    fi
fi
have() {
    case $1 in
    keyvault) want_tool keyvault ;;
    python) want_tool python ;;
    pass) want_tool pass && command -v pass >/dev/null && command -v gpg >/dev/null ;;
    age) want_tool age && command -v age >/dev/null && command -v age-keygen >/dev/null ;;
    keepassxc) want_tool keepassxc && command -v keepassxc-cli >/dev/null ;;
    esac
}
for t in pass age keepassxc; do
    want_tool "$t" && ! have "$t" && log "$t is not available: skipped"
done
want_tool keyvault || log "TOOLS has no keyvault: the ratio columns will be empty"

# --- Python with cryptography -----------------------------------------------------------
# Also runs the timer (it needs only the standard library, plus cryptography for the
# in-process row).
python_with_cryptography() {
    local py
    for py in "${BENCH_PYTHON:-}" "$root/target/interop-venv/bin/python" \
        "$root/target/bench-venv/bin/python"; do
        if [[ -n $py && -x $py ]] && "$py" -c 'import cryptography.fernet' 2>/dev/null; then
            echo "$py"
            return
        fi
    done
    local venv=$root/target/bench-venv
    log "making $venv (pip install cryptography) ..."
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q \
        --only-binary=:all: cryptography >&2
    echo "$venv/bin/python"
}
PY=$(python_with_cryptography)
TIMER=$root/benches/scripts/compare_timer.py
PYSTORE=$root/benches/scripts/py_dict_fernet.py
cryptography_version=$("$PY" -c 'import cryptography; print(cryptography.__version__)')
python_version=$("$PY" -c 'import platform; print(platform.python_version())')

# --- an isolated environment ------------------------------------------------------------
work=$(mktemp -d /tmp/kv-compare.XXXXXX)
chmod 700 "$work"
export HOME=$work/home
export XDG_CONFIG_HOME=$work/home/.config XDG_CACHE_HOME=$work/home/.cache
export XDG_DATA_HOME=$work/home/.local/share XDG_STATE_HOME=$work/home/.local/state
export XDG_RUNTIME_DIR=$work/run GNUPGHOME=$work/gnupg
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME" "$XDG_DATA_HOME" "$XDG_STATE_HOME" \
    "$XDG_RUNTIME_DIR" "$GNUPGHOME"
chmod 700 "$HOME" "$XDG_RUNTIME_DIR" "$GNUPGHOME"
unset KEYVAULT_PATH KEYVAULT_PASSPHRASE_FILE KEYVAULT_NEW_PASSPHRASE \
    KEYVAULT_NEW_PASSPHRASE_FILE GPG_AGENT_INFO DISPLAY WAYLAND_DISPLAY \
    PASSWORD_STORE_DIR PASSWORD_STORE_KEY PASSWORD_STORE_GPG_OPTS \
    PASSWORD_STORE_ENABLE_EXTENSIONS PASSWORD_STORE_UMASK
# For the throwaway vaults only (the one-shot rows open the vault on every call).
export KEYVAULT_PASSPHRASE="compare.sh throwaway passphrase"
KP_PASS="compare.sh throwaway password"

cleanup() {
    local v
    for v in "$work"/n*/kv; do
        if [[ -d $v ]]; then KEYVAULT_PATH=$v "$KV" lock >/dev/null 2>&1 || true; fi
    done
    if [[ -f $work/gpg-agent-stop ]]; then sh "$work/gpg-agent-stop" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

out_dir=$root/target/bench-compare
mkdir -p "$out_dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tsv=$out_dir/compare-$stamp.tsv
report=$out_dir/compare-$stamp.txt
: >"$tsv"

errors=0
T() { "$PY" "$TIMER" "$1" --out "$tsv" "${@:2}" || errors=$((errors + 1)); }

# Inputs: a 44-byte message, a 44-character secret (a Fernet key) for "add", the
# passwords on stdin for keepassxc-cli, and one distinct secret per stored entry.
msg=$work/msg44
printf '%s' 'keyvault compare.sh: a 44-byte test message.' >"$msg"
[[ $(stat -c %s "$msg") == 44 ]] || { log "the message is not 44 bytes"; exit 1; }
secret=$("$PY" -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')
printf '%s\n' "$secret" >"$work/secret"
printf '%s\n' "$KP_PASS" >"$work/kp-pw"
printf '%s\n%s\n' "$KP_PASS" "$secret" >"$work/kp-pw-secret"
max_n=0
for n in $N_LIST; do ((n > max_n)) && max_n=$n; done
"$PY" -c 'import base64, os, sys
for _ in range(int(sys.argv[1])): print(base64.urlsafe_b64encode(os.urandom(32)).decode())' \
    "$max_n" >"$work/secrets"
mapfile -t secrets <"$work/secrets"

# --- one-time peer setup ----------------------------------------------------------------
GPG_OPTS=(--batch --quiet --yes --compress-algo=none --no-encrypt-to)
gpg_fpr=""
setup_gpg() {
    cat >"$work/gpg-params" <<'EOF' || return 1
%no-protection
Key-Type: RSA
Key-Length: 3072
Subkey-Type: RSA
Subkey-Length: 3072
Name-Real: keyvault compare bench
Name-Email: bench@keyvault.invalid
Expire-Date: 0
%commit
EOF
    gpg --batch --quiet --gen-key "$work/gpg-params" 2>/dev/null || return 1
    gpg_fpr=$(gpg --list-keys --with-colons 2>/dev/null | awk -F: '/^fpr/ { print $10; exit }')
    [[ -n $gpg_fpr ]]
}
age_pub=""
setup_age() {
    age-keygen -o "$work/age-identity" 2>/dev/null || return 1
    age_pub=$(age-keygen -y "$work/age-identity") || return 1
}
# Stops this run's gpg-agent and waits until its process is gone (gpgconf returns before
# the agent has exited; a gpg started meanwhile may reach the dying agent and fail).
cat >"$work/gpg-agent-stop" <<'EOF'
pid=$(gpg-connect-agent --no-autostart 'getinfo pid' /bye 2>/dev/null | awk '/^D / { print $2 }')
gpgconf --kill gpg-agent
if [ -n "$pid" ]; then
    while kill -0 "$pid" 2>/dev/null; do sleep 0.005; done
fi
EOF
if have pass; then
    log "gpg: an RSA-3072 key without passphrase (%no-protection) for pass ..."
    setup_gpg || { log "gpg key generation failed: pass skipped"; TOOLS=${TOOLS/pass/}; }
fi
if have age; then
    setup_age || { log "age-keygen failed: age skipped"; TOOLS=${TOOLS/age/}; }
fi

# --- stores of N keys -------------------------------------------------------------------
# Per N a fresh store per tool, in $work/nN: user "bench" (or no user) with keys
# k0..k(N-1). "add" writes new names, so later phases of the same N see N + added keys;
# "list" runs first, on exactly N.
populate() {
    local n=$1 d=$work/n$1 i t0
    mkdir -p "$d"
    if have keyvault; then
        t0=$(date +%s%N)
        KEYVAULT_PATH=$d/kv "$KV" init --kdf-memory 1 --kdf-iterations 1 \
            --kdf-parallelism 1 --allow-weak-kdf >/dev/null 2>&1
        KEYVAULT_PATH=$d/kv "$KV" unlock --timeout 60m >/dev/null
        for ((i = 0; i < n; i++)); do
            KEYVAULT_PATH=$d/kv "$KV" gen bench -n "k$i" >/dev/null
        done
        kv_state[$n]=agent
        log "N=$n keyvault: $n x gen through the agent in $((($(date +%s%N) - t0) / 1000000)) ms"
    fi
    if have python; then
        "$PY" "$PYSTORE" "$d/py.json" populate "$n"
    fi
    if have pass; then
        t0=$(date +%s%N)
        if PASSWORD_STORE_DIR=$d/pass pass init "$gpg_fpr" >/dev/null &&
            (
                cd "$d/pass" &&
                    for ((i = 0; i < n; i++)); do printf '%s\n' "${secrets[i]}" >"k$i"; done &&
                    # One gpg for all N files (as `pass insert` would encrypt each).
                    gpg "${GPG_OPTS[@]}" -r "$gpg_fpr" --encrypt-files k[0-9]* &&
                    find . -maxdepth 1 -type f -name 'k*' ! -name '*.gpg' -delete
            ) && [[ $(PASSWORD_STORE_DIR=$d/pass pass show k0) == "${secrets[0]}" ]]; then
            log "N=$n pass: $n entries in $((($(date +%s%N) - t0) / 1000000)) ms"
        else
            log "N=$n pass: could not fill the store: pass skipped"
            TOOLS=${TOOLS/pass/}
        fi
    fi
    if have age; then
        t0=$(date +%s%N)
        mkdir -p "$d/age"
        for ((i = 0; i < n; i++)); do
            printf '%s\n' "${secrets[i]}" | age -r "$age_pub" -o "$d/age/k$i.age"
        done
        log "N=$n age: $n files in $((($(date +%s%N) - t0) / 1000000)) ms"
    fi
    if have keepassxc; then
        t0=$(date +%s%N)
        "$PY" - "$n" "$work/secrets" >"$d/kp.xml" <<'EOF'
import base64, os, sys
from xml.sax.saxutils import escape
n = int(sys.argv[1])
secrets = open(sys.argv[2]).read().split()
uuid = lambda: base64.b64encode(os.urandom(16)).decode()
out = ['<?xml version="1.0" encoding="UTF-8"?>', "<KeePassFile><Meta><Generator>bench</Generator>"
       "</Meta><Root><Group><UUID>%s</UUID><Name>Passwords</Name>" % uuid()]
for i in range(n):
    out.append("<Entry><UUID>%s</UUID><String><Key>Title</Key><Value>k%d</Value></String>"
               '<String><Key>Password</Key><Value ProtectInMemory="True">%s</Value></String>'
               "</Entry>" % (uuid(), i, escape(secrets[i])))
out.append("</Group></Root></KeePassFile>")
print("\n".join(out))
EOF
        # The database gets keepassxc-cli's default KDF (AES-KDF, 1,000,000 rounds).
        if printf '%s\n%s\n' "$KP_PASS" "$KP_PASS" |
            keepassxc-cli import -q -p "$d/kp.xml" "$d/kp.kdbx" >/dev/null 2>&1 &&
            [[ $(keepassxc-cli show -q -s -a Password "$d/kp.kdbx" k0 <"$work/kp-pw" 2>/dev/null) == "${secrets[0]}" ]]; then
            log "N=$n keepassxc-cli: a database of $n entries in $((($(date +%s%N) - t0) / 1000000)) ms"
        else
            log "N=$n keepassxc-cli: could not make the database: keepassxc skipped"
            TOOLS=${TOOLS/keepassxc/}
        fi
    fi
}

declare -A kv_state
# kv_mode N agent|oneshot: the vault of N served by its agent, or locked (one-shot
# commands open it themselves).
kv_mode() {
    local n=$1 want=$2
    [[ ${kv_state[$n]} == "$want" ]] && return
    if [[ $want == agent ]]; then
        KEYVAULT_PATH=$work/n$n/kv "$KV" unlock --timeout 60m >/dev/null
    else
        KEYVAULT_PATH=$work/n$n/kv "$KV" lock >/dev/null
    fi
    kv_state[$n]=$want
}

# --- measuring --------------------------------------------------------------------------
KVA="keyvault (agent)"
KVO="keyvault (one-shot)"
FLOOR="floor: /bin/true"
KV_FLOOR="floor: keyvault --version"
measure() {
    local phase=$1 n=$2 d=$work/n$2 mode tool
    local c=(--phase "$phase" --n "$n" --warmup "$WARMUP")
    [[ $phase == encdec ]] && c=(--phase encdec --n - --warmup "$WARMUP")

    # The timer's floor at this moment: spawning a process that does nothing, then
    # keyvault's own (process start, argument parsing, no vault: `--version`).
    T run --tool "$FLOOR" "${c[@]}" --reps "$REPS" -- /bin/true
    if have keyvault; then
        T run --tool "$KV_FLOOR" "${c[@]}" --reps "$REPS" -- "$KV" --version
    fi

    if have keyvault; then
        for mode in agent oneshot; do
            kv_mode "$n" "$mode"
            tool=$KVA
            [[ $mode == oneshot ]] && tool=$KVO
            export KEYVAULT_PATH=$d/kv
            case $phase in
            list) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- "$KV" list ;;
            read) T run --tool "$tool" "${c[@]}" --reps "$REPS" --rand-n "$n" -- "$KV" export bench 'k{r}' ;;
            add) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- "$KV" gen bench -n "$mode{i}" ;;
            encdec) T run --tool "$tool" "${c[@]}" --reps "$REPS" --stdin "$msg" --expect "$msg" -- \
                "$KV" encrypt bench k0 --then "$KV" decrypt bench k0 ;;
            esac
            unset KEYVAULT_PATH
        done
        kv_mode "$n" agent
    fi

    if have python; then
        tool="python dict+Fernet (one call per op)"
        case $phase in
        list) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- "$PY" "$PYSTORE" "$d/py.json" list ;;
        read) T run --tool "$tool" "${c[@]}" --reps "$REPS" --rand-n "$n" -- "$PY" "$PYSTORE" "$d/py.json" get bench 'k{r}' ;;
        add) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- "$PY" "$PYSTORE" "$d/py.json" add bench 'new{i}' ;;
        encdec) T run --tool "$tool" "${c[@]}" --reps "$REPS" --stdin "$msg" --expect "$msg" -- \
            "$PY" "$PYSTORE" "$d/py.json" encrypt bench k0 --then "$PY" "$PYSTORE" "$d/py.json" decrypt bench k0 ;;
        esac
        local ip=(--tool "python dict+Fernet (in process)" --reps "$INPROC_REPS" --warmup 10)
        if [[ $phase == encdec ]]; then
            T inproc "${ip[@]}" --n "$n" --ops encdec
        else
            T inproc "${ip[@]}" --n "$n" --ops "$phase"
        fi
    fi

    if have pass; then
        export PASSWORD_STORE_DIR=$d/pass
        tool="pass (gpg-agent warm)"
        case $phase in
        list) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- pass ls ;;
        read)
            T run --tool "$tool" "${c[@]}" --reps "$REPS" --rand-n "$n" -- pass show 'k{r}'
            T run --tool "pass (gpg-agent restarted per call)" "${c[@]}" --reps "$SLOW_REPS" \
                --rand-n "$n" --before "sh $work/gpg-agent-stop" -- pass show 'k{r}'
            ;;
        add) T run --tool "$tool" "${c[@]}" --reps "$REPS" --stdin "$work/secret" -- pass insert -m 'new{i}' ;;
        encdec) T run --tool "pass's gpg (gpg-agent warm)" "${c[@]}" --reps "$REPS" --stdin "$msg" --expect "$msg" -- \
            gpg "${GPG_OPTS[@]}" -e -r "$gpg_fpr" --then gpg "${GPG_OPTS[@]}" -d ;;
        esac
        unset PASSWORD_STORE_DIR
    fi

    if have age; then
        tool="age (files in a dir)"
        case $phase in
        list) T run --tool "$tool" "${c[@]}" --reps "$REPS" -- ls -1 "$d/age" ;;
        read) T run --tool "$tool" "${c[@]}" --reps "$REPS" --rand-n "$n" -- age -d -i "$work/age-identity" "$d/age/k{r}.age" ;;
        add) T run --tool "$tool" "${c[@]}" --reps "$REPS" --stdin "$work/secret" -- age -r "$age_pub" -o "$d/age/new{i}.age" ;;
        encdec) T run --tool "age" "${c[@]}" --reps "$REPS" --stdin "$msg" --expect "$msg" -- \
            age -r "$age_pub" --then age -d -i "$work/age-identity" ;;
        esac
    fi

    if have keepassxc; then
        local db=$d/kp.kdbx kc=(keepassxc-cli)
        local s=(--prompt "kp.kdbx> " --init "$KP_PASS\\n")
        tool="keepassxc-cli (one call per op)"
        case $phase in
        list)
            T run --tool "$tool" "${c[@]}" --reps "$SLOW_REPS" --stdin "$work/kp-pw" -- "${kc[@]}" ls -q "$db"
            T session --tool "keepassxc-cli (open session)" "${c[@]}" --reps "$REPS" "${s[@]}" --op "ls" -- "${kc[@]}" open -q "$db"
            ;;
        read)
            T run --tool "$tool" "${c[@]}" --reps "$SLOW_REPS" --rand-n "$n" --stdin "$work/kp-pw" -- \
                "${kc[@]}" show -q -s -a Password "$db" 'k{r}'
            T session --tool "keepassxc-cli (open session)" "${c[@]}" --reps "$REPS" --rand-n "$n" "${s[@]}" \
                --op 'show -s -a Password k{r}' -- "${kc[@]}" open -q "$db"
            ;;
        add)
            T run --tool "$tool" "${c[@]}" --reps "$SLOW_REPS" --stdin "$work/kp-pw-secret" -- \
                "${kc[@]}" add -q -p "$db" 'new{i}'
            T session --tool "keepassxc-cli (open session)" "${c[@]}" --reps "$REPS" "${s[@]}" \
                --op "add -p snew{i}\\n$secret" -- "${kc[@]}" open -q "$db"
            ;;
        encdec)
            T na --tool "keepassxc-cli (one call per op)" --phase encdec --n - --why "keepassxc-cli has no encrypt command"
            ;;
        esac
    fi
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
first=1
for n in $N_LIST; do
    log "N=$n: filling the stores ..."
    populate "$n"
    for phase in list read add; do
        log "N=$n: $phase ..."
        measure "$phase" "$n"
    done
    if ((first)); then
        log "encrypt+decrypt 44 B ..."
        measure encdec "$n"
        first=0
    fi
    if have keyvault; then kv_mode "$n" oneshot; fi
    rm -rf "$work/n$n"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------------------
version_of() { "$@" 2>/dev/null | head -n 1 || true; }
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
{
    echo "keyvault compare: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc)-core machine ($cpu), $(uname -sr)"
    echo "load average at start ${load_start}, at end ${load_end}; whole run $(($(date +%s) - started)) s"
    echo "versions: $("$KV" --version)"
    have pass && echo "          pass $(pass version 2>/dev/null | grep -o 'v[0-9][0-9.]*' | head -n 1), $(version_of gpg --version)"
    have age && echo "          age $(version_of age --version)"
    have keepassxc && echo "          keepassxc-cli $(version_of keepassxc-cli --version)"
    have python && echo "          Python $python_version, cryptography $cryptography_version"
    echo "per call wall time, process start included (timer: perf_counter_ns around subprocess.run);"
    echo "'$FLOOR' = the same timer spawning /bin/true just before the phase's other rows (the floor"
    echo "of any CLI call at that moment); '$KV_FLOOR' = keyvault's own floor (process start and"
    echo "argument parsing, no vault). 'x /bin/true' = this row's median / the /bin/true floor's median of"
    echo "the same phase and N. Warm-up calls not counted: $WARMUP per row."
    echo "reps: $REPS per row; $SLOW_REPS for keepassxc-cli one call per op and pass with gpg-agent restarted"
    echo "(slow peers); $INPROC_REPS for in-process Python. 'vs X' = this row's median / X's median"
    echo "(above 1: keyvault is faster). N = keys in the store; '-' = does not depend on N."
    echo
    "$PY" "$TIMER" table "$tsv" --reference "$KVA" --reference2 "$KVO" --floor "$FLOOR"
    echo
    echo "Notes (benches/README.md has the details):"
    echo "- keyvault: vault with fast KDF (Argon2id m=1 MiB, t=1, p=1). agent = after 'unlock', each"
    echo "  call goes to the agent; one-shot = no agent, each call opens the vault and runs the KDF"
    echo "  (at the default KDF, m=64 MiB t=3 p=4, add that KDF to every one-shot call)."
    echo "  add = 'gen bench -n NAME' (fernet); read = 'export bench kR'; list = 'list';"
    echo "  encrypt+decrypt = 'encrypt bench k0' then 'decrypt bench k0' on its output."
    echo "- pass: RSA-3072 key without passphrase; gpg-agent warm = agent running with the key"
    echo "  loaded; restarted = 'gpgconf --kill gpg-agent' before each call (not timed), so the"
    echo "  call starts the agent. With a passphrase-protected key and no cached passphrase,"
    echo "  pinentry would ask: not measurable here. encrypt+decrypt = gpg -e | gpg -d as pass calls it."
    echo "- age: one file per secret, unencrypted identity file; list = 'ls -1' of the directory."
    echo "- keepassxc-cli: db-create's default KDF (AES-KDF, 1,000,000 rounds), paid on every"
    echo "  'one call per op' call; 'open session' = one 'keepassxc-cli open' process fed commands"
    echo "  on stdin, timed from writing the command to the next prompt (KDF paid once, untimed):"
    echo "  no process start, an in-memory lookup; compare it with the in-process Python row."
    echo "- python dict+Fernet: the prototype's model as a command over a JSON file (keys in the"
    echo "  clear; writes fsynced); 'in process' = the prototype itself: a dict in one process, no"
    echo "  process start, no disk, nothing persists (a floor, not a CLI)."
    echo "- durability of add (strace on this machine): keyvault, one-shot and through the agent"
    echo "  (fdatasync before the reply; concurrent adds share one), and the Python store fsync"
    echo "  before returning; pass, age and keepassxc-cli write (and rename) without fsync."
    echo
    echo "raw per-call samples: ${tsv#"$root"/}"
} | tee "$report"

if ((errors)); then
    log "$errors measurement(s) failed (ERROR rows above); see the messages before the table"
    exit 1
fi
