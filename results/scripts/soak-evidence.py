#!/usr/bin/env python3
"""Packs the evidence of a finished soak run (results/scripts/soak.py) into a
results folder, small enough to commit.

Usage:
  soak-evidence.py WORK OUTDIR

Writes to OUTDIR:
  summary.json, violations.json, other-stderr.txt   copied from WORK
  violations-first-checker.json                      the same, if WORK has it
  events.jsonl.gz                                    every action, with times
  evidence.tar.gz   runs/ID.out and runs/ID.err of every consumer named in
                    violations.json; archive-near-violations.tsv (the
                    archive's rows within 40 of every chunk named, with inode
                    numbers, sizes and publish times); state.json (every
                    process with its arguments, signals, exit status and start
                    and registration times); depth.log
"""

import gzip
import io
import json
import os
import re
import shutil
import sys
import tarfile

NEAR = 40


def main():
    work, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for name in ("summary.json", "violations.json", "other-stderr.txt"):
        if os.path.exists(os.path.join(work, name)):
            shutil.copy(os.path.join(work, name), os.path.join(out, name))
    with open(os.path.join(work, "events.jsonl"), "rb") as src, \
            gzip.open(os.path.join(out, "events.jsonl.gz"), "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    violations = json.load(open(os.path.join(work, "violations.json")))
    # A run checked again by a corrected checker keeps what the first one
    # found (violations-first-checker.json): its evidence is packed too.
    first = os.path.join(work, "violations-first-checker.json")
    if os.path.exists(first):
        violations += json.load(open(first))
        shutil.copy(first, os.path.join(out, "violations-first-checker.json"))
    ids = sorted({v["id"] for v in violations if isinstance(v.get("id"), int)})
    chunks = set()
    for v in violations:
        if isinstance(v.get("seq"), int):
            chunks.add(v["seq"])
        for number in re.findall(r"chunks? (\d+)", v.get("detail", "")):
            chunks.add(int(number))
    near = []
    with open(os.path.join(work, "archive.tsv")) as archive:
        for line in archive:
            seq = int(line.split("\t", 1)[0])
            if any(abs(seq - chunk) <= NEAR for chunk in chunks):
                near.append(line)
    with tarfile.open(os.path.join(out, "evidence.tar.gz"), "w:gz", compresslevel=9) as tar:
        for pid in ids:
            for suffix in ("out", "err"):
                path = os.path.join(work, "runs", "%05d.%s" % (pid, suffix))
                if os.path.exists(path):
                    tar.add(path, arcname="runs/%05d.%s" % (pid, suffix))
        data = "".join(near).encode()
        info = tarfile.TarInfo("archive-near-violations.tsv")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name in ("state.json", "depth.log"):
            path = os.path.join(work, name)
            if os.path.exists(path):
                tar.add(path, arcname=name)


if __name__ == "__main__":
    main()
