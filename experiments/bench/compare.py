"""Two benchmark JSON files side by side, row by row (same section and name).

Command:  python -m experiments.bench.compare BEFORE.json AFTER.json
Result:   per row: seconds before and after, after / before, and the row's within-run
          `ratio` before and after. Times from different runs move with the machine's load
          (each file's matmul peak is printed to show it); within-run ratios are the
          figures to compare.
"""
from __future__ import annotations

import argparse
import json


def load(path: str) -> dict:
    with open(path) as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or "rows" not in data:
        raise ValueError(f"{path}: expected a benchmark JSON file "
                         f"(python -m experiments.bench --json PATH); it has no 'rows'")
    return data


def paired(before: dict, after: dict) -> tuple[list[tuple[dict, dict]], list[str], list[str]]:
    """(rows present in both, in AFTER's order; names only before; names only after)."""
    key = lambda r: (r.get("section", ""), r["name"])  # noqa: E731
    old = {key(r): r for r in before["rows"]}
    new = {key(r): r for r in after["rows"]}
    both = [(old[k], new[k]) for k in new if k in old]
    return both, [f"{s}: {n}" for s, n in old if (s, n) not in new], [
        f"{s}: {n}" for s, n in new if (s, n) not in old]


def _num(v, fmt: str) -> str:
    return "-" if v is None else fmt.format(v)


def lines(before: dict, after: dict) -> list[str]:
    both, gone, added = paired(before, after)
    out = [f"# matmul peak: before {before['peak']['peak_gflops']:.0f} GFLOP/s, "
           f"after {after['peak']['peak_gflops']:.0f} GFLOP/s",
           f"{'section: row':<72} {'before':>10} {'after':>10} {'after/bef':>9} "
           f"{'ratio bef':>9} {'ratio aft':>9}"]
    for b, a in both:
        out.append(f"{a.get('section', '')}: {a['name']}"[:72].ljust(72)
                   + f" {b['seconds'] * 1e3:8.1f}ms {a['seconds'] * 1e3:8.1f}ms"
                   + f" {a['seconds'] / b['seconds']:9.2f}"
                   + f" {_num(b.get('ratio'), '{:9.2f}'):>9} {_num(a.get('ratio'), '{:9.2f}'):>9}")
    out += [f"only before: {n}" for n in gone] + [f"only after: {n}" for n in added]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args(argv)
    print("\n".join(lines(load(args.before), load(args.after))))


if __name__ == "__main__":
    main()
