"""`pveoci spec`: runc's starter config.json, written once, valid under the schema, loadable as a bundle."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pveoci.oci import Bundle
from pveoci.oci.defaults import default_spec
from tests.harness import Result, invoke
from tests.oci import config_schema


def run(*args: str, cwd: Path | None = None) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PVEOCI_")}
    return invoke(args, env=env, cwd=cwd)


def test_writes_runcs_default_into_the_current_directory(tmp_path: Path) -> None:
    result = run("spec", cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.out == result.err == ""
    text = (tmp_path / "config.json").read_text(encoding="utf-8")
    assert text == json.dumps(default_spec(), indent="\t") + "\n"
    config_schema().validate(json.loads(text))


def test_args_and_bundle(tmp_path: Path) -> None:
    result = run("spec", "-b", str(tmp_path), "--", "/hello", "--greeting", "hi")
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert doc["process"]["args"] == ["/hello", "--greeting", "hi"]
    (tmp_path / "rootfs").mkdir()
    loaded = Bundle.load(tmp_path)
    assert loaded.spec.process is not None
    assert loaded.spec.process.args == ["/hello", "--greeting", "hi"]
    assert loaded.rootfs == tmp_path / "rootfs"


def test_rootless(tmp_path: Path) -> None:
    result = run("spec", "--rootless", "--bundle", str(tmp_path))
    assert result.code == 0, result.err
    doc = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    config_schema().validate(doc)
    assert doc == default_spec(rootless=True)
    assert [ns["type"] for ns in doc["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount", "cgroup", "user"]
    assert doc["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert "resources" not in doc["linux"]


def test_refuses_to_replace_a_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}\n")
    result = run("spec", "-b", str(tmp_path))
    assert result.code == 18
    assert result.err == "pveoci: error: File config.json exists. Remove it first\n"
    assert (tmp_path / "config.json").read_text() == "{}\n"


def test_missing_bundle_directory(tmp_path: Path) -> None:
    result = run("spec", "-b", str(tmp_path / "nope"))
    assert result.code == 18
    assert result.err == f"pveoci: error: bundle {tmp_path / 'nope'} does not exist\n"


def test_help_shows_examples() -> None:
    result = run("spec", "--help")
    assert result.code == 0
    assert "Examples:\n\n    pveoci spec " in result.out
    assert "pveoci spec -b /srv/hello -- /hello" in result.out
    assert "--rootless" in result.out
