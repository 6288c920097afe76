"""`Config.check_run` and `MailboxConfig.build_connector`: the checks `config check` and
every sync share (issue #17), and the starter file `mailmanager init` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailmanager import config

REPO = Path(__file__).resolve().parents[2]


def test_starter_file_reads_the_repository_sample_mailbox() -> None:
    text = config.starter_config_text()
    assert f'path = "{REPO / "examples" / "sample-mailbox"}"' in text
    cfg = config.loads(text, base_dir="/nowhere/in/particular")
    cfg.check_run()  # the sample path is absolute: it runs wherever the file is written


def test_starter_file_without_the_sample_names_a_placeholder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(config, "SAMPLE_MAILBOX", tmp_path / "absent")
    text = config.starter_config_text()
    assert config.PLACEHOLDER_PATH in text and "CHANGE ME" in text
    cfg = config.loads(text, base_dir=str(tmp_path))
    with pytest.raises(config.ConfigFileError) as err:
        cfg.check_run()
    (problem,) = err.value.errors
    assert problem.key == "mailboxes[0].path"
    assert problem.problem == f"{config.PLACEHOLDER_PATH} does not exist"
    assert "set path to an existing path" in problem.fix


def test_check_run_skips_disabled_mailboxes(tmp_path: Path) -> None:
    text = config.starter_config_text().replace(
        f'path = "{REPO / "examples" / "sample-mailbox"}"',
        f'path = "{tmp_path / "gone"}"\nenabled = false',
    )
    config.loads(text, base_dir=str(tmp_path)).check_run()  # `run` never reads it either
