"""The quick start's sample CRM export (`examples/crm/`) imports as written and links the
sample mailbox's threads to their client records."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.helpers import cli
from tests.conftest import REPO


def test_the_sample_crm_imports_and_links_the_sample_threads(tmp_path: Path) -> None:
    text = (REPO / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace("examples/sample-mailbox", str(REPO / "examples" / "sample-mailbox"))
    text = text.replace("sqlite:///mailmanager.db", f"sqlite:///{tmp_path / 'mm.db'}", 1)
    config = tmp_path / "mailmanager.toml"
    config.write_text(text, encoding="utf-8")
    cli("sync", config=config)
    for kind, rows in (("companies", 5), ("contacts", 5), ("opportunities", 4)):
        out = cli("import", kind, str(REPO / "examples" / "crm" / f"{kind}.csv"), config=config)
        assert f"{rows} rows: {rows} created" in out.stdout, out.stdout
        assert "error" not in out.stdout.lower(), out.stdout
    acme = json.loads(
        cli("timeline", "company", "acme-industrie.fr", "--json", config=config).stdout
    )
    subjects = {item["subject"] for item in acme["interactions"]}
    assert any("équipement atelier de Lyon" in s for s in subjects), subjects
    opp = json.loads(cli("timeline", "opportunity", "OPP-2044", "--json", config=config).stdout)
    assert any("Leeds" in item["subject"] for item in opp["interactions"]), opp
