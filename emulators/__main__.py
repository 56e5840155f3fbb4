"""`python -m emulators [--port 8000] [--settings JSON]`: serve every emulated API on loopback."""
import argparse
import json

from emulators.server import serve


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m emulators", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--settings", default="{}",
        help='per-API settings as JSON, e.g. \'{"cards": {"latency": 0.1, "rate_limit": 100, "api_key": "k"}}\'',
    )
    args = parser.parse_args()
    serve(args.host, args.port, json.loads(args.settings))


if __name__ == "__main__":
    main()
