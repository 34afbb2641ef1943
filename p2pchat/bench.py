"""``python -m p2pchat.bench``: p2pchat against TLS 1.3 and raw TCP, on loopback, in one run.

Every figure compares like with like on the same machine in the same run. The
network measures run in interleaved rounds (p2pchat, TLS 1.3 and TCP take turns,
the AES-GCM ceiling is measured in every round), and each ratio is the median of
the per-round ratios, with their spread:

* handshake: TCP connect until both sides can send (p2pchat: until the dialer has
  the listener's hello, after the known-peers check the real program makes);
* round trip of a 64-byte message: p2pchat's real sender and receiver threads
  against an echo peer in another process, versus TLS 1.3 and TCP echo peers;
  and p2pchat's round trip while the same link sends maximum-size texts nonstop;
* throughput of maximum-size messages, sender and receiver in separate
  processes, with ``cryptography``'s single-core AES-256-GCM speed as the ceiling;
* start-up of ``p2pchat --version`` and of ``p2pchat listen`` in pipe mode (until
  ``listening on``) against ``python -c pass`` and ``python -S -c pass``;
* CPU used by a connected, idle pair of real ``p2pchat`` processes;
* CPU per message and RSS across a long pipe run (1,000,000 messages);
* a file sent disk to disk between two real ``p2pchat`` processes (``--send`` to
  ``--save-to``, SHA-256 checked), in interleaved rounds with TLS 1.3 bulk and the
  AES-GCM ceiling, and the text round trip during it against an idle pair's.

This is a benchmark, not a test: it reports, it never fails on a number. A step
that cannot run is one line on stderr and exit status 1; -v shows the details.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import ExitCode

log = logging.getLogger("p2pchat.bench")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m p2pchat.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (numbers are rough)")
    parser.add_argument("-v", "--verbose", action="store_true", help="details of a failure on stderr")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # internal: run one helper server
    parser.add_argument("--certificates", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(format="p2pchat bench: %(message)s", level=logging.DEBUG if args.verbose else logging.WARNING)
    try:
        if args.serve:
            from .benchmarks.servers import serve

            serve(args.serve, args.certificates, sys.stdout)
            return ExitCode.OK
        from .benchmarks import copies, files
        from .benchmarks.extras import EXTRAS
        from .benchmarks.report import table
        from .benchmarks.run import Settings, run

        EXTRAS.extend((files.EXTRA, copies.EXTRA))

        report = run(Settings.smoke() if args.quick else Settings())
        print(json.dumps(report, indent=2) if args.json else table(report))
        return ExitCode.OK
    except KeyboardInterrupt:
        print("p2pchat bench: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # one line for the person running it; the details behind -v
        log.debug("details:", exc_info=exc)
        from .benchmarks.servers import BenchError
        from .errors import P2PChatError

        if isinstance(exc, (BenchError, P2PChatError, OSError)):
            print(f"p2pchat bench: {exc}", file=sys.stderr)
            return ExitCode.NETWORK
        print(f"p2pchat bench: internal error: {exc!r} (run with -v for details)", file=sys.stderr)
        return ExitCode.INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
