"""`minutes serve`: run the HTTP/WebSocket server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from minutes.config import add_dataclass_arguments, load_config, overrides_from_args, to_toml_dict
from server.config import ServerConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the streaming server", description="Run the streaming server.")
    p.add_argument("--config", type=Path, default=None, help="TOML file; its [server] table is read")
    p.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    add_dataclass_arguments(p, ServerConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(
        ServerConfig, toml_path=args.config, section="server", overrides=overrides_from_args(args, ServerConfig)
    )
    if args.print_config:
        print(json.dumps(to_toml_dict(config), indent=2))
        return 0
    import uvicorn

    from server.app import create_app

    # Frames far over the limit are cut by the WebSocket layer (close 1009); those merely over
    # it reach the session, which refuses them with a `message_too_large` error and goes on.
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_config=None,
                ws_max_size=8 * config.max_message_bytes, ws_ping_timeout=config.ws_ping_timeout_seconds)
    return 0
