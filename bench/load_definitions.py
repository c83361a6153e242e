"""How long does loading the Dagster code location take? (fresh interpreter each time)

    .venv/bin/python bench/load_definitions.py [repeats]

Prints the median and max wall time of `import liftlab.definitions; defs()` next to the
baseline of `import dagster` alone in the same run, and writes bench/results/load_definitions.json.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "import dagster (baseline)": "import dagster",
    "liftlab definitions": "import liftlab.definitions as d; d.defs()",
}


def time_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    results = {}
    for name, code in CASES.items():
        time_once(code)  # warm the file cache
        samples = [time_once(code) for _ in range(repeats)]
        results[name] = {"median_s": statistics.median(samples), "max_s": max(samples), "samples": samples}
        print(f"{name:<28} median {results[name]['median_s']:.2f} s   max {results[name]['max_s']:.2f} s")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    record = {"machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": __import__("os").cpu_count()}, "results": results}
    (out / "load_definitions.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
