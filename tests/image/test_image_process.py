"""An image's config as the container's process: podman's rules for the flags that change it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pveoci import errors
from pveoci.image.imageconfig import DEFAULT_PATH, Overrides, parse_entrypoint, process_of, spec_document
from pveoci.lxc.mapping import Target, map_spec
from pveoci.oci.runtime_spec import parse_spec
from pveoci.planning import look_up
from pveoci.process import encode, encode_arg

FILES = {
    "/etc/passwd": b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n#c:x:9:9::/:/\n",
    "/etc/group": b"root:x:0:\napp:x:1000:\nextra:x:2000:app,other\nwheel:x:10:root\nstaff:x:50:other\n",
}
CONFIG = {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv",
          "User": "app", "StopSignal": "SIGINT", "ExposedPorts": {"8080/tcp": {}}, "Volumes": {"/data": {}}}


def read(path: str) -> bytes | None:
    return FILES.get(path)


def test_the_images_process() -> None:
    proc = process_of(CONFIG, Overrides(), read, "image x")
    assert proc.args == ["/bin/sh", "-c", "echo hi"]
    assert proc.env == ["PATH=/bin", "A=1"]
    assert (proc.cwd, proc.uid, proc.gid, proc.groups, proc.stop_signal) == ("/srv", 1000, 1000, [2000], "SIGINT")
    assert {f.field for f in proc.findings} == {"image.Volumes[/data]", "image.ExposedPorts[8080/tcp]"}


@pytest.mark.parametrize(("overrides", "args"), [
    (Overrides(args=["ls", "-l"]), ["/bin/sh", "-c", "ls", "-l"]),
    (Overrides(entrypoint=["/bin/env"]), ["/bin/env"]),
    (Overrides(entrypoint=["/bin/env"], args=["-0"]), ["/bin/env", "-0"]),
    (Overrides(entrypoint=[], args=["/bin/true"]), ["/bin/true"]),
])
def test_entrypoint_and_command_are_replaced_as_podman_does(overrides: Overrides, args: list[str]) -> None:
    assert process_of(CONFIG, overrides, read, "image x").args == args


def test_flags_change_environment_directory_and_user() -> None:
    proc = process_of(CONFIG, Overrides(env=["A=2", "B=3", "EMPTY"], cwd="/tmp", user="root"), read, "x")
    assert proc.env == ["PATH=/bin", "A=2", "B=3", "EMPTY="]
    assert (proc.cwd, proc.uid, proc.gid, proc.groups) == ("/tmp", 0, 0, [10])


@pytest.mark.parametrize(("user", "ids"), [
    ("", (0, 0, [10])), ("0", (0, 0, [10])), ("app", (1000, 1000, [2000])), ("1000", (1000, 1000, [2000])),
    ("4242", (4242, 0, [])), ("app:extra", (1000, 2000, [])), ("app:7", (1000, 7, [])), ("4242:4343", (4242, 4343, [])),
])
def test_users_are_looked_up_in_the_image(user: str, ids: tuple[int, int, list[int]]) -> None:
    proc = process_of({"Cmd": ["x"], "User": user}, Overrides(), read, "x")
    assert (proc.uid, proc.gid, proc.groups) == ids


@pytest.mark.parametrize(("config", "overrides", "words"), [
    ({}, Overrides(), "nothing to run"),
    ({"Cmd": "echo"}, Overrides(), "Cmd is not a list"),
    ({"Cmd": ["x"], "User": "nobody"}, Overrides(), "'nobody' is not in the image's /etc/passwd"),
    ({"Cmd": ["x"], "User": "app:nogroup"}, Overrides(), "'nogroup' is not in the image's /etc/group"),
    ({"Cmd": ["x"], "User": "99999999999"}, Overrides(), "not a valid id"),
    ({"Cmd": ["x"], "WorkingDir": "srv"}, Overrides(), "not an absolute path"),
    ({"Cmd": ["x"], "Env": [1]}, Overrides(), "Env is not a list of strings"),
])
def test_a_broken_config_is_one_line(config: dict[str, object], overrides: Overrides, words: str) -> None:
    with pytest.raises(errors.ImageError, match=words) as caught:
        process_of(config, overrides, read, "image x")
    assert "\n" not in caught.value.message


def test_no_path_gets_the_default_one() -> None:
    assert process_of({"Cmd": ["x"], "Env": ["A=1"]}, Overrides(), read, "x").env == [DEFAULT_PATH, "A=1"]


def test_entrypoint_flag_forms() -> None:
    assert parse_entrypoint("/bin/sh") == ["/bin/sh"]
    assert parse_entrypoint('["/bin/sh", "-c"]') == ["/bin/sh", "-c"]
    assert parse_entrypoint("") == []
    with pytest.raises(errors.InvalidParameter):
        parse_entrypoint('["/bin/sh", 1]')


def test_the_spec_is_a_valid_runtime_spec_with_the_stop_signal() -> None:
    proc = process_of(CONFIG, Overrides(), read, "x")
    document = spec_document(proc, terminal=False, name="reg/app:1", digest="sha256:" + "a" * 64)
    spec = parse_spec(document, where="test")
    assert spec.process is not None
    assert spec.process.args == proc.args
    assert document["annotations"]["org.opencontainers.image.stopSignal"] == "SIGINT"
    assert document["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [2000]}
    assert document["root"] == {"path": "rootfs", "readonly": False}


_TEXT = st.text(max_size=40)
_CONFIG = st.fixed_dictionaries({}, optional={
    "Entrypoint": st.one_of(st.none(), st.lists(_TEXT, max_size=4), _TEXT, st.integers()),
    "Cmd": st.one_of(st.none(), st.lists(_TEXT, max_size=4), _TEXT),
    "Env": st.one_of(st.none(), st.lists(_TEXT, max_size=4), st.lists(st.integers(), max_size=2)),
    "WorkingDir": st.one_of(st.none(), _TEXT, st.just("/srv"), st.integers()),
    "User": st.one_of(st.none(), _TEXT, st.sampled_from(["app", "0", "app:extra", "1000:7", ":", "a:b:c"])),
    "StopSignal": st.one_of(st.none(), _TEXT, st.sampled_from(["SIGINT", "9", "SIGRTMIN+3", "KILL"])),
    "Volumes": st.one_of(st.none(), st.dictionaries(_TEXT, st.just({}), max_size=3), _TEXT),
    "ExposedPorts": st.one_of(st.none(), st.dictionaries(_TEXT, st.just({}), max_size=3), st.lists(_TEXT)),
})


@settings(max_examples=300, deadline=None)
@given(config=_CONFIG, env=st.lists(_TEXT, max_size=3), user=st.one_of(st.none(), _TEXT),
       passwd=st.one_of(st.none(), st.binary(max_size=200)))
def test_any_image_config_is_a_valid_spec_or_one_pveoci_error(config: dict[str, object], env: list[str],
                                                             user: str | None, passwd: bytes | None) -> None:
    """Whatever an image's config holds (or a hostile one: NULs, lone surrogates, wrong types), the process and its
    config.json come out valid, or one PveociError says why: never another exception."""
    files = {"/etc/passwd": passwd if passwd is not None else FILES["/etc/passwd"], "/etc/group": FILES["/etc/group"]}
    try:
        proc = process_of(config, Overrides(env=env, user=user), files.get, "image x")
        spec = parse_spec(spec_document(proc, terminal=False, name="x", digest="sha256:" + "a" * 64), where="x")
        plan = map_spec(spec, Target(), container_id="x", find_program=lambda name, path, cwd: "/bin/sh",
                        look_up=look_up)
        encode(plan.process)
        encode_arg(plan.process)
    except errors.PveociError as exc:
        message = exc.message
    else:
        message = ""
    assert "\n" not in message
