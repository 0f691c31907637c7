#!/usr/bin/env python3
"""The table of `make hsm-matrix`: one row per job, one column per token,
from the TSV lines `arclock-bench --probe` printed for each token."""
import argparse
import datetime
import pathlib
import re

ap = argparse.ArgumentParser()
ap.add_argument("dir", type=pathlib.Path)
ap.add_argument("tokens", nargs="+")
ap.add_argument("--versions", nargs="+", required=True)
ap.add_argument("--seconds", required=True)
ap.add_argument("--out", type=pathlib.Path, required=True)
ap.add_argument("--readme", type=pathlib.Path, required=True)
a = ap.parse_args()

jobs, cells = [], {}
for token in a.tokens:
    for line in (a.dir / f"{token}.tsv").read_text().splitlines():
        job, result, rate = (line.split("\t") + ["", ""])[:3]
        if job not in jobs:
            jobs.append(job)
        if result == "yes":
            cell = f"yes, {int(float(rate)):,}/s" if rate else "yes"
        else:
            cell = "**no**: " + result.removeprefix("no: ").replace("|", "/")
        cells[(job, token)] = cell

head = "| job | " + " | ".join(a.versions) + " |"
rule = "|---" * (len(a.tokens) + 1) + "|"
rows = [
    f"| {job} | " + " | ".join(cells.get((job, t), "not run") for t in a.tokens) + " |"
    for job in jobs
]
when = datetime.date.today().isoformat()
table = "\n".join(
    [
        f"Measured by `make hsm-matrix` on {when}; rates are one session, "
        f"{a.seconds} s each, on this machine.",
        "",
        head,
        rule,
        *rows,
    ]
)
a.out.parent.mkdir(parents=True, exist_ok=True)
a.out.write_text("# PKCS#11 tokens, job by job\n\n" + table + "\n")
text = a.readme.read_text()
marked = re.compile(r"(<!-- hsm-matrix -->\n).*?(<!-- /hsm-matrix -->)", re.S)
if not marked.search(text):
    raise SystemExit(f"{a.readme}: no <!-- hsm-matrix --> markers")
a.readme.write_text(marked.sub(lambda m: m.group(1) + table + "\n" + m.group(2), text))
print(table)
