"""`python -m lab COMMAND`: engine, build, wheels, up, down, status (see lab/README.md).

Logs go to stderr; `up` and `status` print one JSON document on stdout and nothing else."""

from __future__ import annotations

import argparse
import logging
import sys

from lab.errors import LabError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("engine", help="start dockerd unless an engine answers")
    build = sub.add_parser("build", help="build the lab's images (cached by input hash)")
    build.add_argument("images", nargs="*", help="base, server, registry, hello, proxy (all)")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sub.add_parser("wheels", help="download the proxy image's wheels into build/wheels")
    up = sub.add_parser("up", help="start the registry and N servers; print the lab JSON")
    up.add_argument("--servers", type=int, default=2)
    up.add_argument("--memory", help="memory (and memory+swap) limit per server, e.g. 1g")
    sub.add_parser("down", help="remove the lab's containers, network and volumes")
    sub.add_parser("status", help="print the lab document and its containers")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="lab: %(message)s", stream=sys.stderr)
    try:
        if args.command == "engine":
            from lab.host import ensure_engine
            from lab.paths import SHARED_STATE_DIR

            ensure_engine(SHARED_STATE_DIR)
        elif args.command == "build":
            from lab.images import TARGETS, build

            build(tuple(args.images) or TARGETS, force=args.force)
        elif args.command == "wheels":
            from lab.images import download_wheels

            print(download_wheels())
        elif args.command == "up":
            from lab.cluster import up

            print(up(args.servers, args.memory).to_json())
        elif args.command == "down":
            from lab.cluster import down

            down()
        elif args.command == "status":
            from lab.cluster import status

            print(status())
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
