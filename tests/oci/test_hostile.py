"""A bundle made to hurt: config.json as a device, a FIFO, a giant; numbers and strings no program can be given.
Each is a one-line BundleError, at once, and never a traceback, a hang or all the machine's memory."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from pveoci import errors
from pveoci.lxc.draft import Target
from pveoci.lxc.mapping import map_spec
from pveoci.oci import Bundle
from pveoci.oci.defaults import default_spec
from pveoci.oci.rootfs import find_executable, resolve_in_root
from pveoci.oci.runtime_spec import Spec
from tests.guards import fifo_released_after, memory_cap


def make_bundle(base: Path, doc: dict[str, Any] | None = None) -> Path:
    bundle = base / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    (bundle / "rootfs" / "bin" / "sh").write_bytes(b"#!/bin/sh\n")
    (bundle / "rootfs" / "bin" / "sh").chmod(0o755)
    (bundle / "config.json").write_text(json.dumps(default_spec() if doc is None else doc))
    return bundle


def load_error(bundle: Path) -> str:
    with pytest.raises(errors.BundleError) as caught:
        Bundle.load(bundle)
    assert "\n" not in caught.value.message
    return caught.value.message


def with_env(*entries: str) -> dict[str, Any]:
    doc = default_spec()
    doc["process"]["env"] = ["PATH=/bin", *entries]
    return doc


# --- config.json that is not a file ---


def test_a_config_json_linked_to_dev_zero_is_refused_without_reading_it(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").unlink()
    (bundle / "config.json").symlink_to("/dev/zero")
    with memory_cap():  # 0.2 read /dev/zero until no memory was left
        message = load_error(bundle)
    assert message == f"cannot read {bundle}/config.json: it is not a regular file (a character device)"


def test_a_config_json_that_is_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    (bundle / "config.json").unlink()
    os.mkfifo(bundle / "config.json")
    began = time.monotonic()
    with fifo_released_after(bundle / "config.json", 10.0):  # 0.2 waited for a writer forever (here: the guard's)
        message = load_error(bundle)
    assert time.monotonic() - began < 10.0
    assert message == f"cannot read {bundle}/config.json: it is not a regular file (a FIFO)"


def test_a_config_json_larger_than_the_cap_is_refused_by_size(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    with (bundle / "config.json").open("r+b") as fh:
        fh.truncate(4 * 1024 * 1024 + 1)  # sparse: the file's size, not its bytes, is what is refused
    assert load_error(bundle) == f"cannot read {bundle}/config.json: it is larger than 4 MiB"


# --- JSON that Python reads and runc does not, or only at a cost ---


def test_an_integer_of_5000_digits_is_a_bundle_error(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path)
    text = (bundle / "config.json").read_text().replace('"uid": 0', '"uid": ' + "9" * 5000)
    (bundle / "config.json").write_text(text)
    assert load_error(bundle) == (f"{bundle}/config.json: not valid JSON: a number of 5000 digits (a runtime spec "
                                  "has none longer than 20)")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(tmp_path: Path, constant: str) -> None:
    bundle = make_bundle(tmp_path)
    text = (bundle / "config.json").read_text().replace('"uid": 0', f'"uid": {constant}')
    (bundle / "config.json").write_text(text)
    assert load_error(bundle) == f"{bundle}/config.json: not valid JSON: {constant} is not a JSON number"


# --- strings no program (and no Proxmox option) can be given ---


@pytest.mark.parametrize(("doc", "where"), [
    (with_env("SECRET=s3cr3t\\ud800"), "process.env[1]"),
    (with_env("PATH=/bin:\\ud800"), "process.env[1]"),
    ({**default_spec(), "hostname": "web\\udcff"}, "hostname"),
    ({**default_spec(["sh", "\\ud800"])}, "process.args[1]"),
    ({**default_spec(), "annotations": {"\\udfff": "x"}}, "annotations"),
])
def test_a_lone_surrogate_anywhere_is_refused_by_its_path(tmp_path: Path, doc: dict[str, Any], where: str) -> None:
    bundle = make_bundle(tmp_path)
    # json.dumps would write "\\\\ud800"; the file must hold the escape itself, as a hostile config.json does.
    (bundle / "config.json").write_text(json.dumps(doc).replace("\\\\u", "\\u"))
    message = load_error(bundle)
    assert message == (f"invalid config.json in {bundle}: {where}: not valid Unicode (a lone UTF-16 surrogate "
                       "such as \\ud800)")
    assert "s3cr3t" not in message  # an environment value is never echoed


def test_plan_and_run_agree_on_a_surrogate_the_spec_model_let_through() -> None:
    """A Spec made in Python (not from config.json) may hold one: the mapping, which plan runs, refuses what the
    init's encoding (which run needs) could not carry. 0.2 planned it, then crashed in run."""
    doc = default_spec()
    doc["process"]["env"] = ["PATH=/bin", "X=\ud800"]
    spec = Spec.model_validate(doc)
    with pytest.raises(errors.MappingError, match=r"^process: env: not valid Unicode \(a lone UTF-16 surrogate\)$"):
        map_spec(spec, Target(), container_id="c", find_program=lambda name, path, cwd: "/bin/sh")


@pytest.mark.parametrize(("field", "value", "words"), [
    ("args", ["sh", "a" * 131072], "process.args[1]: must be shorter than 131072 bytes (Linux's MAX_ARG_STRLEN)"),
    ("env", ["A=" + "é" * 65535], "process.env[0]: must be shorter than 131072 bytes (Linux's MAX_ARG_STRLEN)"),
    ("cwd", "/" + "a" * 4095, "process.cwd: must be shorter than 4096 bytes (Linux's PATH_MAX)"),
])
def test_what_execve_or_chdir_would_refuse_is_refused_when_loaded(tmp_path: Path, field: str, value: object,
                                                                  words: str) -> None:
    doc = default_spec()
    doc["process"][field] = value
    assert load_error(make_bundle(tmp_path, doc)) == f"invalid config.json in {tmp_path / 'bundle'}: {words}"


# --- paths that make stat(2) fail ---


def test_a_root_path_too_long_for_the_kernel_is_a_bundle_error(tmp_path: Path) -> None:
    doc = default_spec()
    doc["root"]["path"] = "a" * 5000
    message = load_error(make_bundle(tmp_path, doc))  # 0.2: OSError File name too long, exit 70
    assert message.startswith(f"rootfs '{tmp_path}/bundle/aaaa")
    assert message.endswith("...' (root.path) cannot be read: File name too long")


def test_a_bundle_path_too_long_for_the_kernel_is_a_bundle_error(tmp_path: Path) -> None:
    message = load_error(tmp_path / ("b" * 5000))
    assert message.endswith("...' cannot be read: File name too long")


def test_a_root_path_with_a_newline_is_named_on_one_line(tmp_path: Path) -> None:
    doc = default_spec()
    doc["root"]["path"] = "root\nfs"
    message = load_error(make_bundle(tmp_path, doc))
    assert message == f"rootfs '{tmp_path}/bundle/root\\nfs' (root.path) is not a directory"


# --- program lookups that cost more than they should ---


def test_a_program_path_of_many_dot_dots_is_looked_up_in_linear_time(tmp_path: Path) -> None:
    root = make_bundle(tmp_path) / "rootfs"
    began = time.monotonic()
    found = resolve_in_root(root, "/" + "../" * 300_000 + "bin/sh")  # 0.2 copied the rest at every part: ~20 s
    assert time.monotonic() - began < 2.0
    assert found == root / "bin" / "sh"


def test_a_path_naming_one_folder_many_times_looks_in_it_once(tmp_path: Path) -> None:
    root = make_bundle(tmp_path) / "rootfs"
    began = time.monotonic()
    assert find_executable(root, "nothere", ":".join(["/bin"] * 200_000)) is None
    assert time.monotonic() - began < 1.0
