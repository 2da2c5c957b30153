"""Python cryptography's Fernet on 1 MiB in memory: the baseline for the
"Fernet 1 MiB encrypt/decrypt >= 2x Python" target (keyvault's side is
`cargo bench --bench keyuse -- fernet_1MiB`). Prints the median of N runs.

    python python_fernet_1mib.py [RUNS]
"""

import os
import statistics
import sys
import time

import cryptography
from cryptography.fernet import Fernet

MIB = 1 << 20


def median_secs(fn, runs):
    for _ in range(5):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    fernet = Fernet(Fernet.generate_key())
    data = os.urandom(MIB)
    token = fernet.encrypt(data)
    enc = median_secs(lambda: fernet.encrypt(data), runs)
    dec = median_secs(lambda: fernet.decrypt(token), runs)
    print(
        f"python {sys.version.split()[0]}, cryptography {cryptography.__version__}: "
        f"Fernet 1 MiB encrypt {enc * 1e3:.3f} ms = {1 / enc:.0f} MiB/s, "
        f"decrypt {dec * 1e3:.3f} ms = {1 / dec:.0f} MiB/s (median of {runs})"
    )


if __name__ == "__main__":
    main()
