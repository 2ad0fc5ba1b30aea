"""``python -m benchmarks``: measure this project against baselines run in the same command."""

import argparse
import json
import os
import sys

from cl.errors import ConfigError, UserError

from . import run_bench
from .common import _json_default


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description="speed against baselines (see docs/performance.md)")
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--only", nargs="+", help="run only these parts")
    p.add_argument("--data-dir")
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--visitors", type=int, default=None,
                   help="visitors at once in the room part (default 40; 5 with --quick)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.visitors is not None:
            if not 1 <= args.visitors <= 200:
                raise ConfigError(f"--visitors must be between 1 and 200, got {args.visitors}")
            os.environ["CL_BENCH_VISITORS"] = str(args.visitors)
        payload = run_bench(quick=args.quick, only=args.only, data_dir=args.data_dir, out=args.out,
                            verbose=not args.json)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(payload, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
