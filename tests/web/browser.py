"""Driving Debian's Chromium with Playwright in the web tests: launch, console errors, axe.

    with browser.launch() as chromium:
        watch = browser.Watch(artifacts_dir)
        page = watch.page(chromium, locale="fr-FR")
        page.goto(server.url + "/signin")
        watch.check(page, "signin-fr")      # screenshot + axe: 0 serious/critical violations
        ...
        watch.assert_no_console_errors()

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


@contextmanager
def launch() -> Iterator[Any]:
    """Headless Chromium (skips when absent, fails in CI)."""
    if shutil.which(CHROMIUM) is None:
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Watch:
    """Collects console errors of the pages it opens; screenshots and axe checks."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.errors: list[str] = []
        self.shots: list[Path] = []

    def page(self, chromium: Any, locale: str = "en-US") -> Any:
        context = chromium.new_context(locale=locale, viewport={"width": 1200, "height": 900})
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
