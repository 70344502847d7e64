#!/usr/bin/env python3
"""The medians of a criterion run, as a Markdown table.

Usage, from the repository's root, after `cargo bench ... | tee LOG`:

    python3 results/scripts/criterion-medians.py LOG [EARLIER]

LOG gives the benches' order (the names criterion printed); each median and
its 95% confidence interval come from criterion's estimates.json for the
bench (under target/criterion, in the folder its benchmark.json names).
EARLIER, optional, is an earlier run's criterion.txt (name, criterion's
`time:` estimate, interval per line): its figure is given beside ours where the names match, with the
benches renamed since mapped to their new names (RENAMED).
"""

import json
import re
import sys
from pathlib import Path

CRITERION = Path("target/criterion")
# Old name -> new name.
RENAMED = {"lock_and_rename": "publish_exchange"}
NAME = re.compile(r"^([a-z_]+(?:/[A-Za-z0-9_.-]+)*)(?:\s+time:|\s*$)")


def duration(ns):
    """A time in nanoseconds with four significant digits, as criterion prints it."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.4g} {unit}"
    return f"{ns:.4g} ns"


def folders():
    """bench name -> the folder of its latest estimates (criterion writes
    `emit/pipe/splice/4096` under `emit/pipe_splice/4096`)."""
    found = {}
    for path in CRITERION.glob("**/new/benchmark.json"):
        found[json.loads(path.read_text())["full_id"]] = path.parent
    return found


def names_in(log, known):
    """The bench names in the order criterion measured them."""
    names = []
    for line in Path(log).read_text().splitlines():
        match = NAME.match(line)
        if match and match.group(1) in known and match.group(1) not in names:
            names.append(match.group(1))
    return names


def earlier_figures(path):
    """name -> nanoseconds, from a criterion.txt of an earlier run."""
    scale = {"ns": 1, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    figures = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[2] in scale:
            figures[RENAMED.get(fields[0], fields[0])] = float(fields[1]) * scale[fields[2]]
    return figures


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    earlier = earlier_figures(sys.argv[2]) if len(sys.argv) == 3 else {}
    header = "| bench | median | 95% interval of the median |"
    rule = "|---|---:|---|"
    if earlier:
        header += " earlier (`time:`) | now / earlier |"
        rule += "---:|---:|"
    print(header)
    print(rule)
    known = folders()
    for name in names_in(sys.argv[1], known):
        estimates = json.loads((known[name] / "estimates.json").read_text())
        median = estimates["median"]
        interval = median["confidence_interval"]
        row = (
            f"| `{name}` | {duration(median['point_estimate'])} "
            f"| {duration(interval['lower_bound'])} .. {duration(interval['upper_bound'])} |"
        )
        if earlier:
            before = earlier.get(name)
            if before is None:
                row += " | |"
            else:
                row += f" {duration(before)} | {median['point_estimate'] / before:.2f} |"
        print(row)


if __name__ == "__main__":
    main()
