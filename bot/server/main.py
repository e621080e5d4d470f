"""`asyncguard serve`: the arguments, the settings check, then uvicorn.

`bot.cli` adds the `serve` subcommand with `add_serve_arguments` and calls `run_serve`;
`python -m bot.server.main` does the same on its own.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["add_serve_arguments", "main", "run_serve"]

EXIT_USAGE = 2


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        metavar="HOST",
        help="address to listen on (default: ASYNCGUARD_HOST or 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=int, metavar="PORT", help="port (default: ASYNCGUARD_PORT or 8000)"
    )
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read settings from FILE (default: .env in the current directory, when present)",
    )
    parser.add_argument(
        "--insecure-no-signature",
        action="store_true",
        help="accept unsigned deliveries (local experiments only; warns on every request)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Load the settings (one line on stderr and exit 2 when one is missing or wrong), then
    serve until interrupted."""
    from bot.server.settings import SettingsError, load_settings

    try:
        settings = load_settings(
            env_file=args.env_file,
            host=args.host,
            port=args.port,
            insecure_no_signature=args.insecure_no_signature,
        )
    except SettingsError as error:
        print(f"asyncguard: error: {error}", file=sys.stderr)
        return EXIT_USAGE

    import uvicorn

    from bot.server.app import create_app
    from bot.server.logs import configure_logging, uvicorn_log_config

    configure_logging(settings.log_level)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=uvicorn_log_config(settings.log_level),
        access_log=False,
        server_header=False,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="asyncguard serve", description="Serve GitHub webhooks as a GitHub App."
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
