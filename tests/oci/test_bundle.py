"""Loading a bundle from disk: where the rootfs is, what the config's digest is, and each way a bundle is broken."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from pveoci.errors import BundleError
from pveoci.oci import Bundle
from pveoci.oci.defaults import default_spec
from tests.oci import RUNTIME_TOOLS_CONFIG


def make_bundle(base: Path, doc: dict[str, Any] | None = None, *, rootfs: str | None = "rootfs") -> Path:
    bundle = base / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(default_spec() if doc is None else doc, indent="\t") + "\n")
    if rootfs is not None:
        (bundle / rootfs).mkdir()
    return bundle


def load_error(path: Path) -> str:
    with pytest.raises(BundleError) as caught:
        Bundle.load(path)
    assert caught.value.exit_code == 18
    assert "\n" not in caught.value.message
    return caught.value.message


def test_relative_root_path_is_inside_the_bundle(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    loaded = Bundle.load(bundle)
    assert loaded.path == bundle
    assert loaded.rootfs == bundle / "rootfs"
    assert loaded.config_path == bundle / "config.json"
    assert loaded.spec.process is not None
    assert loaded.spec.process.args == ["sh"]
    assert loaded.config_digest == hashlib.sha256((bundle / "config.json").read_bytes()).hexdigest()


def test_absolute_root_path_is_used_as_is(tmp_path: Path) -> None:
    elsewhere = tmp_path / "images" / "alpine"
    elsewhere.mkdir(parents=True)
    doc = default_spec()
    doc["root"]["path"] = str(elsewhere)
    assert Bundle.load(make_bundle(tmp_path, doc, rootfs=None)).rootfs == elsewhere


def test_root_path_may_leave_the_bundle(tmp_path: Path) -> None:
    (tmp_path / "shared-rootfs").mkdir()
    doc = default_spec()
    doc["root"]["path"] = "../shared-rootfs"
    assert Bundle.load(make_bundle(tmp_path, doc, rootfs=None)).rootfs == tmp_path / "shared-rootfs"


def test_a_relative_bundle_path_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_bundle(tmp_path)
    monkeypatch.chdir(tmp_path)
    loaded = Bundle.load(Path("bundle"))
    assert loaded.path == tmp_path / "bundle"
    assert loaded.path.is_absolute()
    assert loaded.rootfs.is_absolute()


def test_a_bundle_is_frozen(tmp_path: Path) -> None:
    loaded = Bundle.load(make_bundle(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.rootfs = tmp_path  # type: ignore[misc]


def test_the_digest_is_of_the_exact_bytes(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    first = Bundle.load(bundle).config_digest
    (bundle / "config.json").write_text(json.dumps(default_spec()))  # same document, other bytes
    assert Bundle.load(bundle).config_digest != first


def test_the_runtime_tools_config_loads_as_a_bundle(tmp_path: Path) -> None:
    loaded = Bundle.load(make_bundle(tmp_path, json.loads(RUNTIME_TOOLS_CONFIG.read_text(encoding="utf-8"))))
    assert loaded.spec.hostname == "runtime-tools"


def test_missing_bundle(tmp_path: Path) -> None:
    assert load_error(tmp_path / "nope") == f"bundle {tmp_path / 'nope'} does not exist"


def test_bundle_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert load_error(tmp_path / "file") == f"bundle {tmp_path / 'file'} is not a directory"


def test_missing_config(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"no config.json in {tmp_path}"


def test_broken_json(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").write_text('{\n\t"ociVersion": "1.3.0",\n\t"process" {\n')
    assert load_error(bundle) == f"{bundle}/config.json: not valid JSON at line 3 column 12: Expecting ':' delimiter"


def test_empty_config(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").write_bytes(b"")
    assert load_error(bundle) == (f"{bundle}/config.json: not valid JSON at line 1 column 1: "
                                  "Expecting value")


def test_config_that_is_not_utf8(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").write_bytes(b'{"ociVersion": "1.3.0", "hostname": "caf\xe9"}')
    assert load_error(bundle) == f"{bundle}/config.json: not valid JSON: not UTF-8 text (byte 40)"


def test_config_nested_too_deeply(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").write_text("[" * 200_000)
    assert load_error(bundle) == f"{bundle}/config.json: not valid JSON: nested too deeply"


def test_config_that_is_not_an_object(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, [default_spec()])  # type: ignore[arg-type]
    assert load_error(bundle) == f"invalid config.json in {bundle}: top level: must be an object"


def test_unreadable_config(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").unlink()
    (bundle / "config.json").mkdir()
    assert load_error(bundle) == f"cannot read {bundle}/config.json: it is a directory"


def test_missing_rootfs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, rootfs=None)
    assert load_error(bundle) == f"rootfs {bundle}/rootfs (root.path) is not a directory"


def test_rootfs_that_is_a_file(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, rootfs=None)
    (bundle / "rootfs").write_text("")
    assert load_error(bundle) == f"rootfs {bundle}/rootfs (root.path) is not a directory"


def test_empty_args(tmp_path: Path) -> None:
    doc = default_spec()
    doc["process"]["args"] = []
    bundle = make_bundle(tmp_path, doc)
    assert load_error(bundle) == f"invalid config.json in {bundle}: process.args: must not be empty"


def test_a_nul_byte_in_the_env_is_refused_naming_the_entry_not_its_value(tmp_path: Path) -> None:
    doc = default_spec()
    doc["process"]["env"].append("API_TOKEN=s3cr3t\0more")
    bundle = make_bundle(tmp_path, doc)
    assert '\\u0000' in (bundle / "config.json").read_text()
    assert load_error(bundle) == f"invalid config.json in {bundle}: process.env[2]: must not contain a NUL byte"


def test_process_is_required(tmp_path: Path) -> None:
    doc = default_spec()
    del doc["process"]
    bundle = make_bundle(tmp_path, doc)
    assert load_error(bundle) == (f"invalid config.json in {bundle}: process: required by pveoci "
                                  "(a bundle must say what to run)")


def test_root_is_required(tmp_path: Path) -> None:
    doc = default_spec()
    del doc["root"]
    bundle = make_bundle(tmp_path, doc)
    assert load_error(bundle) == f"invalid config.json in {bundle}: root: required (config.md: REQUIRED on Linux)"


def test_spec_errors_name_the_bundle_and_the_json_path(tmp_path: Path) -> None:
    doc = default_spec()
    doc["process"]["env"].append("NO_VALUE")
    doc["linux"]["namespaces"][0]["type"] = "pidns"
    bundle = make_bundle(tmp_path, doc)
    assert load_error(bundle) == (
        f"invalid config.json in {bundle}: process.env[2]: must be KEY=VALUE with a non-empty KEY; "
        "linux.namespaces[0].type: must be 'mount', 'pid', 'network', 'uts', 'ipc', 'user', 'cgroup' or 'time', "
        "not 'pidns'")


def test_unreadable_config_is_a_bundle_error(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").unlink()
    (bundle / "config.json").mkdir()
    assert load_error(bundle) == f"cannot read {bundle}/config.json: it is a directory"
