"""Timing helper for benches/scripts/compare.sh (a benchmark, not a test).

Each timed operation is one or more process calls, timed with time.perf_counter_ns
around subprocess.run, so the process start a script pays is included. Results go to a
TSV file, one row per (tool, phase, N): the per-call samples in milliseconds. `table`
turns that file into the report.

    compare_timer.py run     --out TSV --tool T --phase P --n N --reps R [options] -- CMD... [--then CMD...]
    compare_timer.py session --out TSV --tool T --phase P --n N --reps R --prompt S --init TEXT --op TEMPLATE -- CMD...
    compare_timer.py inproc  --out TSV --n N --reps R --ops PHASE,...  (needs `cryptography`)
    compare_timer.py na      --out TSV --tool T --phase P --n N --why TEXT
    compare_timer.py table   TSV [--reference TOOL] [--reference2 TOOL] [--floor TOOL]

In a command or an --op template, `{i}` becomes a counter (from --start, counting the
warm-up calls too, so names made by an "add" never repeat) and `{r}` a random index in
[0, --rand-n). In an --op template, `\\n` is a newline.
"""

import argparse
import os
import random
import select
import shlex
import statistics
import subprocess
import sys
import time

SEP = "--then"


def fail(msg):
    print(f"compare_timer: {msg}", file=sys.stderr)


def subst(s, i, rand_n, rng):
    if "{i}" in s:
        s = s.replace("{i}", str(i))
    if "{r}" in s:
        s = s.replace("{r}", str(rng.randrange(rand_n)))
    return s


def percentile(sorted_xs, q):
    """Nearest-rank percentile of sorted samples."""
    if not sorted_xs:
        return float("nan")
    k = max(0, min(len(sorted_xs) - 1, int(-(-q * len(sorted_xs) // 100)) - 1))
    return sorted_xs[k]


def write_row(path, tool, phase, n, status, note, samples_ms):
    with open(path, "a", encoding="utf-8") as f:
        f.write(
            "\t".join(
                [
                    tool,
                    phase,
                    str(n),
                    status,
                    note.replace("\t", " ").replace("\n", " "),
                    ",".join(f"{x:.4f}" for x in samples_ms),
                ]
            )
            + "\n"
        )


def split_stages(argv):
    stages, cur = [], []
    for a in argv:
        if a == SEP:
            stages.append(cur)
            cur = []
        else:
            cur.append(a)
    stages.append(cur)
    if any(not s for s in stages):
        raise SystemExit("compare_timer: empty command")
    return stages


def cmd_run(a):
    stages = split_stages(a.cmd)
    stdin_data = open(a.stdin, "rb").read() if a.stdin else None
    expect = open(a.expect, "rb").read() if a.expect else None
    before = shlex.split(a.before) if a.before else None
    rng = random.Random(a.seed)
    samples = []
    i = a.start
    for rep in range(a.warmup + a.reps):
        if before:
            subprocess.run(before, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, check=False)
        argvs = [[subst(x, i, a.rand_n, rng) for x in st] for st in stages]
        i += 1
        data = stdin_data
        t0 = time.perf_counter_ns()
        for argv in argvs:
            p = subprocess.run(
                argv,
                input=data,
                stdin=None if data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
            )
            if p.returncode != 0:
                err = p.stderr.decode(errors="replace").strip()[-400:]
                fail(f"{a.tool} / {a.phase} / N={a.n}: `{shlex.join(argv)}` exited "
                     f"{p.returncode}: {err}")
                write_row(a.out, a.tool, a.phase, a.n, "error",
                          f"exit {p.returncode}: {err}", samples)
                return 3
            data = p.stdout
        t1 = time.perf_counter_ns()
        if expect is not None and rep == 0 and data.rstrip(b"\n") != expect.rstrip(b"\n"):
            fail(f"{a.tool} / {a.phase}: output differs from {a.expect}: {data[:80]!r}")
            write_row(a.out, a.tool, a.phase, a.n, "error", "wrong output", samples)
            return 3
        if rep >= a.warmup:
            samples.append((t1 - t0) / 1e6)
    write_row(a.out, a.tool, a.phase, a.n, "ok", a.note or "", samples)
    return 0


def read_until(fd, prompt, timeout):
    """Reads from fd until the data read ends with prompt; returns it."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(prompt):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(buf[-200:])
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise EOFError(buf[-200:])
        buf += chunk
    return buf


def cmd_session(a):
    """One long-lived interactive process (keepassxc-cli open): write one command line,
    time until the next prompt is printed."""
    prompt = a.prompt.encode()
    rng = random.Random(a.seed)
    err_path = a.out + ".session-stderr"
    with open(err_path, "wb") as errf:
        p = subprocess.Popen(a.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=errf, bufsize=0)
    try:
        fd = p.stdout.fileno()
        p.stdin.write(a.init.encode().decode("unicode_escape").encode())
        read_until(fd, prompt, 60)
        err_size = os.path.getsize(err_path)
        samples = []
        i = a.start
        for rep in range(a.warmup + a.reps):
            line = subst(a.op, i, a.rand_n, rng).encode().decode("unicode_escape") + "\n"
            i += 1
            t0 = time.perf_counter_ns()
            p.stdin.write(line.encode())
            read_until(fd, prompt, 60)
            t1 = time.perf_counter_ns()
            size = os.path.getsize(err_path)
            err = ""
            if size != err_size:
                with open(err_path, "rb") as f:
                    f.seek(err_size)
                    err = f.read().decode(errors="replace").strip()[-400:]
                err_size = size
            if err:  # (a password prompt ends its line on stderr: not an error)
                fail(f"{a.tool} / {a.phase}: `{line.strip()}` wrote to stderr: {err}")
                write_row(a.out, a.tool, a.phase, a.n, "error", err, samples)
                return 3
            if rep >= a.warmup:
                samples.append((t1 - t0) / 1e6)
        write_row(a.out, a.tool, a.phase, a.n, "ok", a.note or "", samples)
        return 0
    except (TimeoutError, EOFError) as e:
        fail(f"{a.tool} / {a.phase}: session ended or hung: {e}")
        write_row(a.out, a.tool, a.phase, a.n, "error", "session ended or hung", [])
        return 3
    finally:
        try:
            p.stdin.write(b"quit\n")
            p.stdin.close()
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        os.unlink(err_path)


def cmd_inproc(a):
    """The prototype itself: a dict of Fernet keys in one Python process. No process
    start, no file, nothing persists: the floor any CLI is measured against."""
    from cryptography.fernet import Fernet

    rng = random.Random(a.seed)
    store = {"bench": {f"k{j}": Fernet.generate_key() for j in range(a.n)}}
    msg = b"x" * 44
    reps = a.reps

    def add(i):
        store["bench"][f"new{i}"] = Fernet.generate_key()

    def read(i):
        return store["bench"][f"k{rng.randrange(a.n)}"]

    def list_(i):
        return "\n".join(f"{u} {k}" for u in sorted(store) for k in sorted(store[u]))

    def encdec(i):
        f = Fernet(store["bench"]["k0"])
        assert f.decrypt(f.encrypt(msg)) == msg

    fns = {"add": add, "read": read, "list": list_, "encdec": encdec}
    for phase in a.ops.split(","):
        fn = fns[phase]
        for w in range(a.warmup):
            fn(-1 - w)
        samples = []
        for i in range(reps):
            t0 = time.perf_counter_ns()
            fn(i)
            t1 = time.perf_counter_ns()
            samples.append((t1 - t0) / 1e6)
        n = "-" if phase == "encdec" else a.n
        write_row(a.out, a.tool, phase, n, "ok", a.note or "", samples)
    return 0


def cmd_na(a):
    write_row(a.out, a.tool, a.phase, a.n, "n/a", a.why, [])
    return 0


PHASES = {"add": "add one key", "read": "read one key", "list": "list N",
          "encdec": "encrypt+decrypt 44 B"}


def fmt_ms(x):
    if x != x:  # nan
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 0.1:
        return f"{x:.2f}"
    return f"{x:.4f}"


def fmt_ratio(x):
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}x"
    if x >= 10:
        return f"{x:.1f}x"
    if x >= 0.01:
        return f"{x:.2f}x"
    return "<0.01x"


def cmd_table(a):
    rows = []
    with open(a.tsv, encoding="utf-8") as f:
        for line in f:
            tool, phase, n, status, note, samples = line.rstrip("\n").split("\t")
            xs = sorted(float(x) for x in samples.split(",") if x)
            rows.append((tool, phase, n, status, note, xs))
    med = {}
    for tool, phase, n, status, note, xs in rows:
        if status == "ok" and xs:
            med[(tool, phase, n)] = statistics.median(xs)
    order_phase = list(PHASES)
    order_tool = []
    for r in rows:
        if r[0] not in order_tool:
            order_tool.append(r[0])

    def nkey(n):
        return (1, 0) if n == "-" else (0, int(n))

    rows.sort(key=lambda r: (order_phase.index(r[1]), nkey(r[2]), order_tool.index(r[0])))
    refs = [x for x in (a.reference, a.reference2) if x]
    head = ["tool", "phase", "N", "reps", "median ms", "p90 ms"] + [
        f"vs {r}" for r in refs]
    if a.floor:
        head.append(f"x {a.floor.removeprefix('floor: ')}")
    out = []
    notes = []
    for tool, phase, n, status, note, xs in rows:
        if status == "ok":
            m = statistics.median(xs)
            cells = [tool, PHASES[phase], n, str(len(xs)), fmt_ms(m),
                     fmt_ms(percentile(xs, 90))]
            for ref in refs:
                rm = med.get((ref, phase, n))
                floor = tool.startswith("floor:")
                cells.append(fmt_ratio(m / rm) if rm and tool != ref and not floor else "-")
            if a.floor:
                fm = med.get((a.floor, phase, n))
                cells.append(fmt_ratio(m / fm) if fm and tool != a.floor else "-")
        else:
            label = "n/a" if status == "n/a" else "ERROR"
            cells = [tool, PHASES[phase], n, "-", label, "-"] + ["-"] * (
                len(refs) + (1 if a.floor else 0))
            if note:
                notes.append(f"{tool}, {PHASES[phase]}: {label}: {note}")
        out.append(cells)
    widths = [max(len(str(c[k])) for c in out + [head]) for k in range(len(head))]
    right = {2, 3, 4, 5} | set(range(6, len(head)))

    def line(cells):
        return "| " + " | ".join(
            str(c).rjust(widths[k]) if k in right else str(c).ljust(widths[k])
            for k, c in enumerate(cells)) + " |"

    print(line(head))
    print("|" + "|".join(("-" * (w + 1) + ":") if k in right else ("-" * (w + 2))
                         for k, w in enumerate(widths)) + "|")
    for cells in out:
        print(line(cells))
    if notes:
        print()
        for n in dict.fromkeys(notes):
            print(f"- {n}")
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="sub", required=True)

    def common(p, reps=True):
        p.add_argument("--out", required=True)
        p.add_argument("--tool", default="python dict+Fernet (in process)")
        p.add_argument("--phase", default="")
        p.add_argument("--n", default="-")
        p.add_argument("--note", default="")
        if reps:
            p.add_argument("--reps", type=int, required=True)
            p.add_argument("--warmup", type=int, default=2)
            p.add_argument("--start", type=int, default=0)
            p.add_argument("--rand-n", type=int, default=1)
            p.add_argument("--seed", type=int, default=1)

    p = sub.add_parser("run")
    common(p)
    p.add_argument("--stdin")
    p.add_argument("--expect")
    p.add_argument("--before")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("session")
    common(p)
    p.add_argument("--prompt", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--op", required=True)
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("inproc")
    common(p)
    p.add_argument("--ops", required=True)
    p = sub.add_parser("na")
    common(p, reps=False)
    p.add_argument("--why", default="")
    p = sub.add_parser("table")
    p.add_argument("tsv")
    p.add_argument("--reference")
    p.add_argument("--reference2")
    p.add_argument("--floor", help="a tool whose median each row is divided by (same phase and N)")
    a = ap.parse_args()
    if getattr(a, "cmd", None) and a.cmd[0] == "--":
        a.cmd = a.cmd[1:]
    if a.sub in ("run", "session") and not a.cmd:
        ap.error("no command given")
    if a.sub == "inproc":
        a.n = int(a.n)
    return {"run": cmd_run, "session": cmd_session, "inproc": cmd_inproc, "na": cmd_na,
            "table": cmd_table}[a.sub](a)


if __name__ == "__main__":
    sys.exit(main())
