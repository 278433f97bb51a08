"""`costline dashboard`: the Streamlit dashboard, headless and without usage telemetry.

The command replaces itself with `streamlit run` on the installed `dashboard/app.py`, so a
signal sent to it (Ctrl-C, or `costline up` stopping its children) reaches Streamlit directly.
The dashboard reads only through the read API at `COSTLINE_API_URL`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from costline.schemas.settings import Settings

#: Exit status for a usage or configuration error (as in `costline.cli`).
EXIT_ERROR = 2


def app_path() -> Path:
    """The installed dashboard entry point."""
    spec = importlib.util.find_spec("costline.dashboard")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the costline.dashboard package is not installed")
    return Path(spec.origin).parent / "app.py"


def streamlit_command(script: Path, host: str, port: int) -> list[str]:
    """`python -m streamlit run …` with the options a server needs: headless, no telemetry, no reloads."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
    ]


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def dashboard(
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (0.0.0.0 for other hosts).")
    ] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, help="Port (default: COSTLINE_DASHBOARD_PORT, 8501)."),
    ] = None,
) -> None:
    """Serve the dashboard (Streamlit) against the read API at COSTLINE_API_URL (Ctrl-C stops it)."""
    settings = Settings()
    if importlib.util.find_spec("streamlit") is None:
        typer.echo('error: the dashboard needs Streamlit: pip install "costline[server]"', err=True)
        raise typer.Exit(EXIT_ERROR)
    port = port or settings.dashboard_port
    if not _port_free(host, port):
        typer.echo(
            f"error: port {port} on {host} is already in use; "
            "stop what uses it or set COSTLINE_DASHBOARD_PORT",
            err=True,
        )
        raise typer.Exit(EXIT_ERROR)
    env = dict(os.environ) | {"COSTLINE_API_URL": settings.resolved_api_url()}
    command = streamlit_command(app_path(), host, port)
    typer.echo(f"dashboard http://{host}:{port} reading the API at {env['COSTLINE_API_URL']}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
