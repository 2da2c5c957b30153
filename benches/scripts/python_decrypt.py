"""Times `Vault.decrypt` of a small Fernet token from Python, through the agent and on
a vault opened directly, against the prototype's way (`Fernet(key).decrypt` in memory),
in the same run. Prints the median and p90 per call in microseconds.

    python benches/scripts/python_decrypt.py [ROUNDS]

Needs the keyvault package installed (`pip install ./bindings/python`, or
`maturin develop --release` in bindings/python), `cryptography`, and the keyvault
binary for the agent (`KEYVAULT_BIN`, else `keyvault` on PATH). It works in a
temporary vault with fast KDF parameters and its own HOME and runtime directory, and
removes them afterwards; it never touches your vault.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
PLAINTEXT = b"a small secret: 32 bytes of text"
PASSPHRASE = "bench only"


def timed(f, rounds):
    for _ in range(min(200, rounds)):
        f()
    samples = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        f()
        samples.append(time.perf_counter_ns() - t)
    samples.sort()
    return statistics.median(samples) / 1000, samples[int(len(samples) * 0.9)] / 1000


def main():
    binary = os.environ.get("KEYVAULT_BIN") or shutil.which("keyvault")
    if binary is None:
        sys.exit("set KEYVAULT_BIN to the keyvault binary (e.g. target/release/keyvault)")
    root = tempfile.mkdtemp(prefix="kvbench-")
    try:
        for name in ("HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            path = os.path.join(root, name.lower())
            os.makedirs(path, mode=0o700)
            os.environ[name] = path
        for name in ("KEYVAULT_PASSPHRASE", "KEYVAULT_PASSPHRASE_FILE"):
            os.environ.pop(name, None)
        vault_dir = os.path.join(root, "vault")
        os.environ["KEYVAULT_PATH"] = vault_dir

        import keyvault
        from cryptography.fernet import Fernet

        keyvault.create(
            vault_dir, PASSPHRASE, kdf_memory_kib=1024, kdf_iterations=1,
            kdf_parallelism=1, allow_weak_kdf=True,
        )
        with keyvault.open(passphrase=PASSPHRASE, agent=False) as v:
            v.generate("User123", "fernet")
            token = v.encrypt("User123", "fernet", PLAINTEXT)
            key = v.export("User123", "fernet")
            assert v.decrypt("User123", "fernet", token) == PLAINTEXT
            direct = timed(lambda: v.decrypt("User123", "fernet", token), ROUNDS)

        pfile = os.path.join(root, "pass")
        with open(pfile, "w") as f:
            f.write(PASSPHRASE)
        os.chmod(pfile, 0o600)
        subprocess.run(
            [binary, "unlock", "--passphrase-file", pfile], check=True, stdin=subprocess.DEVNULL
        )
        try:
            with keyvault.open() as a:
                assert a.via_agent
                assert a.decrypt("User123", "fernet", token) == PLAINTEXT
                agent = timed(lambda: a.decrypt("User123", "fernet", token), ROUNDS)
        finally:
            subprocess.run([binary, "lock"], check=False, stdin=subprocess.DEVNULL)

        f = Fernet(key)
        assert f.decrypt(token) == PLAINTEXT
        memory = timed(lambda: f.decrypt(token), ROUNDS)
        import cryptography

        print(f"decrypt of a {len(token)}-byte Fernet token ({len(PLAINTEXT)}-byte plaintext), "
              f"{ROUNDS} calls each; Python {sys.version.split()[0]}, cryptography {cryptography.__version__}")
        print(f"{'path':<40} {'median us':>10} {'p90 us':>10}")
        for name, (med, p90) in [
            ("keyvault, through the agent", agent),
            ("keyvault, vault opened directly", direct),
            ("prototype: Fernet(key).decrypt in memory", memory),
        ]:
            print(f"{name:<40} {med:>10.1f} {p90:>10.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
