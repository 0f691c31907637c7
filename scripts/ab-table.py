#!/usr/bin/env python3
"""An interleaved A/B of `arclock-bench` runs as one markdown table.

Usage: scripts/ab-table.py LABEL=DIR [LABEL=DIR ...]

Each DIR holds the `latest.md` of one run (`arclock-bench hsm api --out DIR`),
in the order the runs were made; a LABEL is the side (`before`, `after`, ...)
and may repeat. Prints one column per run and the mean of each side, so that
a difference can be held against the spread within one side: these shared
2-core hosts move by a third between minutes.
"""

import re
import statistics
import sys


def section(text, title):
    """The lines of the section whose heading is exactly `title`."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line[3:].strip() == title
            continue
        if inside:
            out.append(line)
    return out


def cells(line):
    """The cells of one markdown table line."""
    return [c.strip() for c in line.strip().strip("|").split("|")]


def row(lines, first):
    """The cells of the table row whose first cell is `first`."""
    for line in lines:
        found = cells(line)
        if found and found[0] == first:
            return found
    return None


def number(cell):
    m = re.match(r"[-\d.]+", cell or "")
    return float(m.group(0)) if m else None


# (figure, section, first cell, column)
FIGURES = [
    ("signer RS256, 2 workers /s", "HSM (SoftHSM2 2.6, PKCS#11 via cryptoki)", ("sign RS256", "2"), 2),
    ("signer ES256, 2 workers /s", "HSM (SoftHSM2 2.6, PKCS#11 via cryptoki)", ("sign ES256", "2"), 2),
    ("verify 1 client p50 ms", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "1", 2),
    ("verify 4 clients /s", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "4", 1),
    ("verify 16 clients /s", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "16", 1),
    ("raw pipeline p50 ms", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "raw pipeline", 2),
    ("raw pipeline, 2 workers /s", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "raw pipeline, 2 workers", 1),
    ("12 MP: raw pipeline p50 ms", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "raw pipeline, 12 MP phone JPEG", 2),
    ("12 MP: verify 1 client p50 ms", "Daemon end to end (verify-face over TLS on loopback, release arclockd)", "1, 12 MP phone JPEG", 2),
    ("verify 1 client: embed step ms", "Where the time goes: typical against slowest requests", "embed", 1),
    ("verify 1 client: pad step ms", "Where the time goes: typical against slowest requests", "pad", 1),
    ("refresh RS256, 1 client p50 ms", "Refresh-token rotation", "1", 2),
    ("refresh RS256, 1 client /s", "Refresh-token rotation", "1", 1),
    ("refresh RS256, 4 clients /s", "Refresh-token rotation", "4", 1),
    ("refresh ES256, 1 client p50 ms", "Refresh-token rotation with ES256", "1", 2),
    ("refresh ES256, 1 client /s", "Refresh-token rotation with ES256", "1", 1),
    ("refresh ES256, 4 clients /s", "Refresh-token rotation with ES256", "4", 1),
]


# (figure, first cell, column heading): a step of the "Where the time goes"
# table, found by its column's heading.
STEPS = [
    ("refresh RS256, 4 clients: store_wait ms", "store_wait", "refresh, 4 client(s): p45-p55"),
    ("refresh RS256, 4 clients: store ms", "store", "refresh, 4 client(s): p45-p55"),
    ("12 MP: intake ms", "intake", "verify, 12 MP phone JPEG: p45-p55"),
    ("12 MP: lock ms", "lock", "verify, 12 MP phone JPEG: p45-p55"),
    ("12 MP: outside the handler ms", "outside the handler", "verify, 12 MP phone JPEG: p45-p55"),
]

# (figure, signature, what): from the "Where the 2 cores went" paragraph, per
# rotation at 4 clients.
CORES = [
    ("refresh RS256, 4 clients: daemon core-ms", "RS256", "daemon"),
    ("refresh RS256, 4 clients: idle core-ms", "RS256", "idle"),
    ("refresh ES256, 4 clients: daemon core-ms", "ES256", "daemon"),
    ("refresh ES256, 4 clients: idle core-ms", "ES256", "idle"),
]

# (figure, numerator, denominator): a ratio of two FIGURES taken in one run.
RATIOS = [
    ("verify 1 client p50 / raw p50", "verify 1 client p50 ms", "raw pipeline p50 ms"),
    ("12 MP: verify 1 client p50 / raw p50", "12 MP: verify 1 client p50 ms", "12 MP: raw pipeline p50 ms"),
    ("refresh RS256 4 clients / signer", "refresh RS256, 4 clients /s", "signer RS256, 2 workers /s"),
    ("refresh ES256 4 clients / signer", "refresh ES256, 4 clients /s", "signer ES256, 2 workers /s"),
]


def step(text, first, heading):
    lines = section(text, "Where the time goes: typical against slowest requests")
    head = next((line for line in lines if line.startswith("| step")), None)
    if head is None:
        return None
    cols = cells(head)
    if heading not in cols:
        return None
    found = row(lines, first)
    return number(found[cols.index(heading)]) if found else None


def cores(text, signature, what):
    para = next(
        (
            line
            for line in text.splitlines()
            if line.startswith("Where the 2 cores went") and "per rotation" in line
        ),
        "",
    )
    at = para.find(f"{signature}: the daemon ")
    if at < 0:
        return None
    pattern = r"the daemon ([\d.]+) core-ms" if what == "daemon" else r"the cores idle ([\d.]+)"
    m = re.search(pattern, para[at:])
    return float(m.group(1)) if m else None


def figure(text, sec, first, col):
    lines = section(text, sec)
    if isinstance(first, tuple):
        for line in lines:
            found = cells(line)
            if tuple(found[: len(first)]) == first:
                return number(found[col])
        return None
    found = row(lines, first)
    return number(found[col]) if found else None


def fmt(v):
    return "-" if v is None else f"{v:.3g}"


def main(args):
    runs = []
    for a in args:
        label, _, d = a.partition("=")
        with open(f"{d}/latest.md") as f:
            runs.append((label, f.read()))
    sides = list(dict.fromkeys(label for label, _ in runs))
    head = [f"{label}{i + 1}" for i, (label, _) in enumerate(runs)]
    print("| figure | " + " | ".join(head) + " | " + " | ".join(f"mean {s}" for s in sides) + " |")
    print("|---" * (1 + len(runs) + len(sides)) + "|")
    taken = {}
    for name, sec, first, col in FIGURES:
        taken[name] = [figure(text, sec, first, col) for _, text in runs]
    for name, first, heading in STEPS:
        taken[name] = [step(text, first, heading) for _, text in runs]
    for name, signature, what in CORES:
        taken[name] = [cores(text, signature, what) for _, text in runs]
    for name, top, bottom in RATIOS:
        taken[name] = [
            None if a is None or not b else a / b for a, b in zip(taken[top], taken[bottom])
        ]
    for name in taken:
        vals = taken[name]
        means = []
        for s in sides:
            mine = [v for (label, _), v in zip(runs, vals) if label == s and v is not None]
            means.append(statistics.mean(mine) if mine else None)
        print(f"| {name} | " + " | ".join(fmt(v) for v in vals) + " | " + " | ".join(fmt(m) for m in means) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
