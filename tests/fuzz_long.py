#!/usr/bin/env python3
"""The fuzz properties (tests/pure/test_*_fuzz.py), run long, outside CI.

    python3 tests/fuzz_long.py --examples 20000
    python3 tests/fuzz_long.py --examples 5000 -- -k challenge -x

Every property runs `--examples` examples (the loopback-server ones a tenth of that), with a
fresh random seed unless `--seed` is given, and prints hypothesis' statistics. Not a test module:
pytest does not collect it (its name does not start with `test_`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=20000, help="examples per property")
    parser.add_argument("--seed", help="hypothesis seed, to replay a run")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments, after --")
    args = parser.parse_args()

    os.environ["UPDATER_FUZZ_EXAMPLES"] = str(args.examples)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    import pytest

    argv = [
        "tests/pure/",
        "-k",
        "fuzz",
        "-p",
        "no:cacheprovider",
        "-ra",
        "--hypothesis-show-statistics",
        "--durations=0",
        *(["--hypothesis-seed", args.seed] if args.seed else []),
        *args.pytest_args,
    ]
    start = time.monotonic()
    code = pytest.main(argv)
    print(f"fuzz_long: {args.examples} examples per property, {time.monotonic() - start:.0f} s")
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
