"""Per-module mutation scores from mutmut's results (run after ``mutmut run``; see MUTATION.md).

mutmut 3 keeps one ``mutants/<module>.meta`` file per mutated module with the exit code of each
mutant's test run: 1 killed, 0 survived, 33 no test covers it, None not run (yet).

    python benchmarks/mutation_scores.py
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

NAMES = {1: "killed", 0: "survived", 33: "no tests", None: "not run"}


def main() -> None:
    print("| module | mutants | killed | survived | no tests | not run | killed / run |")
    print("|---|---|---|---|---|---|---|")
    for meta in sorted(Path("mutants/hpo").rglob("*.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        counts = collections.Counter(NAMES.get(code, f"exit {code}") for code in codes.values())
        if not codes:
            continue
        run = len(codes) - counts["not run"]
        score = f"{100 * counts['killed'] / run:.1f} %" if run else "-"
        module = meta.relative_to("mutants").with_suffix("").as_posix()
        print(f"| {module} | {len(codes)} | {counts['killed']} | {counts['survived']} | "
              f"{counts['no tests']} | {counts['not run']} | {score} |")


if __name__ == "__main__":
    main()
