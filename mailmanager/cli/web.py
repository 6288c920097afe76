"""`mailmanager web`: serve the web workspace with uvicorn until Ctrl-C or SIGTERM."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import click

from mailmanager.cli.app import EXIT_CONFIG, EXIT_FAILED, State, database, fail


def _say(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@click.command("web")
@click.option("--host", metavar="ADDRESS", help="Listen on this address (default: [web] host).")
@click.option("--port", type=int, metavar="PORT", help="Listen on this port (default: [web] port).")
@click.pass_obj
def web_cmd(state: State, host: str | None, port: int | None) -> None:
    """Serve the web workspace (follow-ups, sign-in by emailed link) until interrupted.

    People sign in with a one-time link sent to their address. With [web] sign_in_links
    "auto" (the default) and a loopback address, each requested link is also printed here,
    so the workspace works on one machine without an SMTP server.
    """
    import uvicorn

    from mailmanager.notify import actionlinks
    from mailmanager.web import processes
    from mailmanager.web.app import WORKER_ADDRESS, WORKER_CONFIG, create_app

    cfg = state.config()
    web = cfg.web
    web = dataclasses.replace(web, host=host or web.host, port=port or web.port)
    cfg = dataclasses.replace(cfg, web=web)
    try:
        actionlinks.load_key(web.secret_file)
    except actionlinks.SecretFileError as exc:
        fail(f"{exc} ([web] secret_file in {state.config_file})", EXIT_CONFIG)
    # No access log: sign-in and action links carry their token in the path.
    options: dict[str, Any] = {"log_level": "warning", "access_log": False}
    with database(state, create=True) as factory:
        _say(f"mailmanager web: open {web.url}/ in your browser (Ctrl-C to stop)")
        if web.print_sign_in_links:
            _say("Sign-in links will be printed here as they are requested.")
        if web.workers == 1:
            app = create_app(cfg, factory, notice=_say)
            uvicorn.run(app, host=web.host, port=web.port, **options)
            return
    # Several processes: each makes its app (`web.app.for_worker`) from the same file.
    os.environ[WORKER_CONFIG] = str(Path(state.config_file).resolve())
    os.environ[WORKER_ADDRESS] = f"{web.host}:{web.port}"
    if processes.balanced():  # a listening socket per process (`web.processes`)
        try:
            processes.Supervisor(web.host, web.port, web.workers, options).run()
        except processes.ServeError as exc:
            fail(str(exc), EXIT_FAILED)
        return
    uvicorn.run(
        "mailmanager.web.app:for_worker",
        factory=True,
        workers=web.workers,
        host=web.host,
        port=web.port,
        **options,
    )
