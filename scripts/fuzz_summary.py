"""One line per fuzz target from its libFuzzer log (make fuzz): executions, coverage, corpus, findings.

    python scripts/fuzz_summary.py TARGET LOG      # exit 1 when the run found something
"""
from __future__ import annotations

import re
import sys


def summarize(target: str, log: str) -> tuple[str, bool]:
    runs = re.findall(r"stat::number_of_executed_units: (\d+)", log)
    status = re.findall(r"^#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\S+)", log, re.M)
    speed = re.findall(r"stat::average_exec_per_sec: (\d+)", log)
    finding = re.search(r"(ERROR: libFuzzer: [^\n]+|ERROR: AddressSanitizer: [^\n]+|runtime error: [^\n]+|"
                        r"=== Uncaught Python exception: ===\n[^\n]*\n?[^\n]*|ALARM: working on the last Unit for [^\n]+)",
                        log)
    unit = re.search(r"(?:Test unit written to|written to) (\S+)", log)
    parts = [f"fuzz {target}:"]
    parts.append(f"{runs[-1] if runs else (status[-1][0] if status else '?')} executions")
    if speed:
        parts.append(f"({speed[-1]}/s)")
    if status:
        _, cov, ft, corp, size = status[-1]
        total = re.search(r"Loaded 1 modules\s+\((\d+) inline 8-bit counters\)", log)
        of = f" of the engine's {total.group(1)}" if total else ""
        parts.append(f"coverage {cov}{of} edges, {ft} features, corpus {corp} inputs ({size})")
    if finding:
        parts.append(f"FINDING: {finding.group(1).strip()}" + (f"; input {unit.group(1)}" if unit else ""))
    elif not status:
        parts.append("did not run (see the log)")
    return " ".join(parts), bool(finding) or not status


if __name__ == "__main__":
    target, path = sys.argv[1], sys.argv[2]
    with open(path, errors="replace") as f:
        line, bad = summarize(target, f.read())
    print(line + ("" if not bad else f"\n  log: {path}"))
    sys.exit(1 if bad else 0)
