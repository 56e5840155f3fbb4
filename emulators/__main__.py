"""`python -m emulators [--port 8000] [--settings JSON]`: serve every emulated API on loopback."""
import argparse
import json

from emulators.server import serve


def emulated_apis() -> dict[str, str]:
    """Each emulated API's name (the keys of --settings) and the first line of its module's docstring."""
    from emulators.app import API_MODULES

    return {module.NAME: module.__doc__.strip().splitlines()[0] for module in API_MODULES}


def main() -> None:
    apis = emulated_apis()
    width = max(map(len, apis))
    parser = argparse.ArgumentParser(
        prog="python -m emulators", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="emulated APIs (the names --settings takes):\n" + "\n".join(
            f"  {name:<{width}}  {summary}" for name, summary in sorted(apis.items())))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--settings", default="{}",
        help='per-API settings as JSON, e.g. \'{"cards": {"latency": 0.1, "rate_limit": 100, "api_key": "k"}}\'',
    )
    args = parser.parse_args()
    try:
        settings = json.loads(args.settings)
    except ValueError as error:
        parser.error(f"--settings is not JSON: {error}")
    if not isinstance(settings, dict) or not all(isinstance(value, dict) for value in settings.values()):
        parser.error('--settings takes {"API name": {"setting": value, ...}, ...}')
    try:
        serve(args.host, args.port, settings)
    except ValueError as error:  # an unknown API or setting name: build_app's message lists the known ones
        parser.error(str(error))


if __name__ == "__main__":
    main()
