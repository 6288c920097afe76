"""Driving Debian's Chromium with Playwright in the web tests: launch, console errors, axe.

    def test_x(chromium: Any, watch: browser.Watch) -> None:    # fixtures of conftest.py
        page = watch.page(chromium, locale="fr-FR")    # in a new context: its own cookies
        page.goto(server.url + "/signin")
        watch.check(page, "signin-fr")      # screenshot + axe: 0 serious/critical violations
        ...
        watch.assert_no_console_errors()

Starting Chromium (and Playwright's driver) takes one to two seconds, so the session starts
it once (`shared()`; the `chromium` fixture and `launch()` give it); each test's pages live
in browser contexts of their own, which share no cookies, storage or cache, as separate
browsers would, and the `watch` fixture (or the end of a `launch()` block) closes them.

axe (tests/web/assets/axe.min.js, MPL-2.0) is evaluated through the DevTools protocol, which
the page's Content-Security-Policy (script-src 'self') does not apply to; the pages keep their
CSP, so a CSP violation shows as a console error and fails the test.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = Path(__file__).parent / "assets" / "axe.min.js"
BLOCKING = ("serious", "critical")


# The session's Playwright and Chromium, started at first use (`shared`), stopped by
# `stop_shared` when the session ends (an autouse fixture of conftest.py). One thread can
# run only one Playwright (sync API) at a time, so every browser test uses this one.
_SHARED: dict[str, Any] = {}


def shared() -> Any:
    """The session's headless Chromium (skips when absent, fails in CI)."""
    if "browser" not in _SHARED:
        if shutil.which(CHROMIUM) is None:
            if IN_CI:
                pytest.fail(f"{CHROMIUM} is required in CI (apt-get install chromium)")
            pytest.skip("chromium is not installed")
        from playwright.sync_api import sync_playwright

        _SHARED["playwright"] = sync_playwright().start()
        _SHARED["browser"] = _SHARED["playwright"].chromium.launch(
            executable_path=CHROMIUM, args=ARGS
        )
    return _SHARED["browser"]


def stop_shared() -> None:
    """Close the session's Chromium and Playwright, if they were started."""
    if "browser" in _SHARED:
        _SHARED.pop("browser").close()
    if "playwright" in _SHARED:
        _SHARED.pop("playwright").stop()


@contextmanager
def launch() -> Iterator[Any]:
    """The session's Chromium for the block; the contexts opened in it are closed at its
    end, so the next user meets a browser with nothing open."""
    chromium = shared()
    before = list(chromium.contexts)
    try:
        yield chromium
    finally:
        for context in chromium.contexts:
            if context not in before:
                context.close()


class Watch:
    """Collects console errors of the pages it opens; screenshots and axe checks."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.errors: list[str] = []
        self.shots: list[Path] = []
        self.contexts: list[Any] = []

    def page(self, chromium: Any, locale: str = "en-US") -> Any:
        """A page in a new browser context (no cookies or storage shared with other pages)."""
        context = chromium.new_context(locale=locale, viewport={"width": 1200, "height": 900})
        self.contexts.append(context)
        page = context.new_page()
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"{page.url}: {msg.text}") if msg.type == "error" else None
            ),
        )
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    def check(self, page: Any, name: str) -> list[dict[str, Any]]:
        """Save a full-page screenshot as `<name>.png` and assert that axe finds no serious
        or critical violation. Returns axe's violations (all impacts)."""
        path = self.artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        print(f"screenshot: {path}")
        if not page.evaluate("() => typeof window.axe !== 'undefined'"):
            page.evaluate(AXE.read_text(encoding="utf-8"))
        result = page.evaluate(
            "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        )
        bad = [v for v in result if v.get("impact") in BLOCKING]
        summary = [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in bad
        ]
        assert not bad, f"axe on {name} ({page.url}):\n{json.dumps(summary, indent=1)}"
        return list(result)

    def assert_no_console_errors(self) -> None:
        assert not self.errors, "console errors:\n" + "\n".join(self.errors)

    def close(self) -> None:
        """Close the contexts of the pages opened (the browser may serve other tests)."""
        for context in self.contexts:
            context.close()
        self.contexts.clear()
