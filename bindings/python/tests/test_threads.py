"""One Vault shared between threads, on both paths: every call answers correctly,
and the GIL is released while the vault works (other Python threads run meanwhile)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import keyvault

from conftest import FAST_KDF, PASSPHRASE


def test_shared_between_threads(vault):
    vault.generate("User123", "fernet")
    vault.generate("User123", "rsa-2048")

    def work(i):
        msg = f"message {i}".encode()
        token = vault.encrypt("User123", "fernet", msg)
        assert vault.decrypt("User123", "fernet", token) == msg
        sig = vault.sign("User123", "rsa-2048", msg)
        assert vault.verify("User123", "rsa-2048", msg, sig)
        vault.generate(f"user{i}", "fernet")
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(work, range(32))) == list(range(32))
    assert len(vault.list()) == 2 + 32


def test_gil_released_during_kdf(env):
    """While one thread derives a key (a slow Argon2id), another runs Python code."""
    slow = dict(FAST_KDF, kdf_memory_kib=64 * 1024, kdf_iterations=3)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.monotonic()
        keyvault.create(env.vault, PASSPHRASE, **slow)
        with keyvault.open(passphrase=PASSPHRASE, prompt=False):
            pass
        end = time.monotonic()
    finally:
        done.set()
        t.join()
    during = [x for x in ticks if start < x < end]
    # With the GIL held for the whole derivation, the ticker could not run at all.
    assert end - start > 0.05
    assert len(during) >= 10, (end - start, len(during))
