"""`pveoci config init|show`: a commented example, and the effective settings with secrets masked."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from tests.harness import Result, invoke


def run(*args: str, env: dict[str, str]) -> Result:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
    return invoke(args, env={**base, **env})


def test_init_writes_a_private_example_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    result = run("--config", str(path), "config", "init", "--name", "lab", "--host", "pve1.lab", env={})
    assert result.code == 0, result.err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    shown = run("--config", str(path), "config", "show", "-o", "json", env={})
    data = json.loads(shown.out)
    assert data["profile"]["name"] == "lab"
    assert data["profile"]["host"] == "pve1.lab"


def test_init_does_not_overwrite_without_force(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('# mine\n[profiles.default]\nhost = "pve1"\n')
    result = run("--config", str(path), "config", "init", env={})
    assert result.code == 3
    assert result.err == f"pveoci: error: {path} has a profile 'default' already; use --force to replace it\n"
    assert path.read_text() == '# mine\n[profiles.default]\nhost = "pve1"\n'
    assert run("--config", str(path), "config", "init", "--force", env={}).code == 0


def test_show_masks_secrets_and_says_where_values_come_from(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[profiles.default]\nhost = "pve1"\ntoken_id = "a@pve!b"\n')
    env = {"PVEOCI_CONFIG": str(path), "PVEOCI_TOKEN_SECRET": "very-secret-value", "PVEOCI_NODE": "pve2"}
    table = run("config", "show", env=env)
    assert table.code == 0, table.err
    rows = {line.split()[0]: line.split()[1:] for line in table.out.splitlines()[2:]}
    assert rows["host"] == ["pve1", "file", str(path)]
    assert rows["node"] == ["pve2", "environment"]
    assert rows["port"] == ["8006", "default"]
    assert rows["token_secret"] == ["********", "env", "PVEOCI_TOKEN_SECRET"]
    as_json = json.loads(run("config", "show", "-o", "json", env=env).out)
    assert as_json["profile"]["token_secret"] == "********"
    for out in (table.out + table.err, json.dumps(as_json)):
        assert "very-secret-value" not in out


def test_show_refuses_an_unknown_profile(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[profiles.lab]\nhost = "x"\n')
    result = run("--config", str(path), "-p", "prod", "config", "show", env={})
    assert result.code == 3
    assert result.err == f"pveoci: error: no profile 'prod' in {path} (profiles: lab)\n"
