"""`[web] threads`: how many requests a server process works on at once (the thread pool
that runs FastAPI's sync routes and dependencies). The real app in process: the pool's
size once it has started, the default, and a value refused with what to write."""

from __future__ import annotations

import textwrap
import warnings
from pathlib import Path

import anyio.to_thread
import pytest

from mailmanager import config
from mailmanager.db import store
from mailmanager.web import app as web_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def _cfg(tmp_path: Path, extra: str = "") -> config.Config:
    text = f"""
        [database]
        url = "sqlite:///{tmp_path / "mm.db"}"
        [[users]]
        email = "alice@example.com"
        name = "Alice"
        [web]
        secret_file = "{tmp_path / "web.key"}"
        {extra}
        """
    return config.loads(textwrap.dedent(text), base_dir=str(tmp_path))


def _pool_size(cfg: config.Config) -> int:
    engine = store.make_engine(cfg.database.url)
    store.upgrade(engine)
    app = web_app.create_app(cfg, store.session_factory(engine), send_mail=False)
    try:
        with TestClient(app) as client:  # runs the app's start (lifespan)
            assert client.get("/signin").status_code == 200  # a sync route, in the pool
            assert client.portal is not None
            return int(
                client.portal.call(
                    lambda: anyio.to_thread.current_default_thread_limiter().total_tokens
                )
            )
    finally:
        engine.dispose()


def test_the_pool_has_the_configured_size(tmp_path: Path) -> None:
    assert _pool_size(_cfg(tmp_path, "threads = 2")) == 2


def test_the_default_is_four_not_fastapis_forty(tmp_path: Path) -> None:
    assert _cfg(tmp_path).web.threads == 4
    assert _pool_size(_cfg(tmp_path)) == 4


def test_zero_threads_is_refused_with_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigFileError) as refused:
        _cfg(tmp_path, "threads = 0")
    assert "threads" in str(refused.value) and ">= 1" in str(refused.value)
