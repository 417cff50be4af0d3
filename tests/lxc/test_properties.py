"""Values in Proxmox's property strings (mp[n], dev[n], net0, rootfs, tags, hostname): what PVE would read
back is what was meant, or the value is refused with one line naming the field, before anything changes."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pveoci import errors, settings
from pveoci.lxc import properties
from pveoci.lxc.mapping import Target
from tests.lxc.test_mapping import ROOT_PAM, assert_finding, bind, plan

UNNAMED = "<unnamed>"


def pve_reads(value: str) -> dict[str, str]:
    """What Proxmox reads back from an option written to /etc/pve/lxc/VMID.conf as `key: value`: one line, white
    space at its ends dropped (pve-container's parse_pct_config), cut at ',' into key=value parts, a part
    without '=' the unnamed (default key) value (pve-common's parse_property_string). ValueError where PVE dies."""
    if "\n" in value:
        raise ValueError("a line break: the rest is another config line")
    line = value.strip()
    out: dict[str, str] = {}
    for part in line.split(","):
        if not part.strip():
            continue
        named = re.fullmatch(r"([^=]+)=(.+)", part, re.S)
        if named:
            if named[1] in out:
                raise ValueError(f"duplicate key {named[1]}")
            out[named[1]] = named[2]
        elif "=" not in part:
            if UNNAMED in out:
                raise ValueError("two unnamed values")
            out[UNNAMED] = part
        else:
            raise ValueError("missing key")
    return out


def refused(changes: dict[str, object], target: Target = ROOT_PAM) -> errors.MappingError:
    with pytest.raises(errors.MappingError) as caught:
        plan(changes, target)
    assert "\n" not in caught.value.message
    assert "\r" not in caught.value.message
    assert caught.value.exit_code == 19
    return caught.value


# --- mp[n]: a bind mount's source and destination ---


def test_a_source_with_a_comma_is_refused_not_read_as_more_settings() -> None:
    # Before: mp0 = "/h,ro=0,mp=/a", a host path "/h" with the bundle's own ro=0.
    error = refused({"mounts.7": bind("/h,ro=0", "/a")})
    assert error.message == ("mounts[7]: source '/h,ro=0' cannot go into Proxmox's mp0: it contains ',', "
                             "which would start another setting")


def test_a_source_with_an_equals_sign_is_refused() -> None:
    error = refused({"mounts.7": bind("/srv/a=b", "/a")})
    assert "mounts[7]: source '/srv/a=b'" in error.message
    assert "'='" in error.message


def test_a_destination_with_a_comma_is_refused() -> None:
    # Before: mp1 = "/h,mp=/a,b=c", an unknown key b for PVE or, with a known one, a setting of the bundle's.
    error = refused({"mounts.7": bind("/h", "/a,b=c")})
    assert error.message.startswith("mounts[7]: destination '/a,b=c' cannot go into Proxmox's mp0: it contains ','")


@pytest.mark.parametrize(("char", "shown"), [("\x00", "\\x00"), ("\r", "\\x0d"), ("\n", "\\x0a"), ("\x7f", "\\x7f"),
                                             ("\u2028", "\\u2028")])
@pytest.mark.parametrize("part", ["source", "destination"])
def test_a_path_with_a_control_character_is_refused_and_shown_escaped(char: str, shown: str, part: str) -> None:
    source, destination = ("/srv/a" + char + "b", "/data") if part == "source" else ("/srv", "/da" + char + "ta")
    error = refused({"mounts.7": bind(source, destination)})
    assert f"mounts[7]: {part} '" in error.message
    assert shown in error.message
    assert "control character" in error.message


@pytest.mark.parametrize("destination", ["/data ", "/data\u00a0"])
def test_a_destination_ending_in_white_space_is_refused_as_proxmox_would_drop_it(destination: str) -> None:
    assert "white space" in refused({"mounts.7": bind("/srv", destination)}).message


@pytest.mark.parametrize(("source", "destination"), [("/srv/../etc", "/data"), ("/srv", "/data/./x"),
                                                     ("/srv", "/data/..")])
def test_dot_components_are_refused_as_proxmox_refuses_them(source: str, destination: str) -> None:
    assert "'.' and '..'" in refused({"mounts.7": bind(source, destination)}).message


def test_mount_options_reach_mp_only_as_ro() -> None:
    result = plan({"mounts.7": bind("/srv", "/data", "ro", "mode=0,ro=0", "x,backup=1")}, ROOT_PAM)
    assert pve_reads(str(result.options["mp0"])) == {UNNAMED: "/srv", "mp": "/data", "ro": "1"}


def test_a_refused_mount_is_refused_only_where_it_would_become_mp() -> None:
    # With a token the mount is not applied at all: nothing of it reaches a property string.
    result = plan({"mounts.7": bind("/h,ro=0", "/a")}, Target())
    assert_finding(result, "mounts[7]", "unsupported", "only root@pam may set")
    assert "mp0" not in result.options


def test_paths_with_spaces_and_any_unicode_are_kept() -> None:
    result = plan({"mounts.7": bind("/srv/my data/é中😀", "/data/a=b c")}, ROOT_PAM)
    assert pve_reads(str(result.options["mp0"])) == {UNNAMED: "/srv/my data/é中😀", "mp": "/data/a=b c"}


@given(st.text(min_size=1), st.text(min_size=1), st.booleans())
def test_any_mount_is_read_back_by_proxmox_as_meant_or_refused(source: str, destination: str, ro: bool) -> None:
    source = "/" + source
    try:
        result = plan({"mounts.7": bind(source, destination, *(["ro"] if ro else []))}, ROOT_PAM)
    except errors.MappingError as exc:
        refusal = exc.message
    else:
        refusal = None
    if refusal is not None:
        assert refusal.startswith("mounts[7]: ")
        assert "\n" not in refusal
        assert "\r" not in refusal
        return
    if "mp0" not in result.options:
        return  # a mount LXC makes itself
    wanted = destination if destination.startswith("/") else "/" + destination
    assert pve_reads(str(result.options["mp0"])) == {UNNAMED: source, "mp": wanted, **({"ro": "1"} if ro else {})}


# --- dev[n] ---


def device(path: str) -> dict[str, object]:
    return {"path": path, "type": "c", "major": 10, "minor": 229, "fileMode": 0o660, "uid": 0, "gid": 5}


def test_a_device_path_with_a_comma_is_refused() -> None:
    # Before: dev0 = "/dev/fuse,uid=0,mode=0666,uid=0,gid=5": the bundle's own settings of dev0.
    error = refused({"linux.devices": [device("/dev/fuse,uid=0,mode=0666")]})
    assert error.message.startswith("linux.devices[0]: path '/dev/fuse,uid=0,mode=0666' cannot go into Proxmox's "
                                    "dev0: it contains ','")


@pytest.mark.parametrize("path", ["/dev/fu\nse", "/dev/a=b", "/dev/../etc/shadow"])
def test_a_device_path_proxmox_would_misread_or_refuse_is_refused(path: str) -> None:
    assert refused({"linux.devices": [device(path)]}).message.startswith("linux.devices[0]: path ")


def test_a_device_outside_dev_is_not_passed_to_proxmox_but_made_by_the_init() -> None:
    result = plan({"linux.devices": [device("/opt/fuse")]}, ROOT_PAM)
    assert_finding(result, "linux.devices[0]", "approximated", "the node /opt/fuse")
    assert "dev0" not in result.options


def test_a_device_is_read_back_as_meant() -> None:
    result = plan({"linux.devices": [device("/dev/fuse")]}, ROOT_PAM)
    assert pve_reads(str(result.options["dev0"])) == {UNNAMED: "/dev/fuse", "mode": "0660", "uid": "0", "gid": "5"}


def test_device_numbers_out_of_range_are_refused_by_the_builder() -> None:
    with pytest.raises(properties.Refused, match="mode"):
        properties.device("dev0", "/dev/fuse", mode=0o4777, uid=None, gid=None)
    with pytest.raises(properties.Refused, match="uid"):
        properties.device("dev0", "/dev/fuse", mode=None, uid=-1, gid=None)


# --- net0: the profile's bridge ---


def target_refused(target: Target) -> str:
    """The one line a profile's value that cannot go into a property string is refused with."""
    with pytest.raises(errors.ConfigError) as caught:
        plan({}, target)
    assert "\n" not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize("bridge", ["vmbr0,evil=1", "vmbr0\n", "vmbr 0", "", "vmbr0;x"])
def test_a_bridge_proxmox_would_misread_is_a_config_error_where_net0_is_made(bridge: str) -> None:
    message = target_refused(Target(bridge=bridge))
    assert message.startswith("the profile's bridge '")
    assert "cannot go into Proxmox's net0" in message


@pytest.mark.parametrize("bridge", ["vmbr0,evil=1", "vmbr0\n", "vmbr0 "])
def test_a_bridge_proxmox_would_misread_is_refused_when_the_settings_load(bridge: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        settings.load(config_path=None, env={"PVEOCI_CONFIG": "/nonexistent/config.toml", "PVEOCI_HOST": "pve",
                                             "PVEOCI_BRIDGE": bridge})
    assert "bridge:" in caught.value.message
    assert "cannot go into Proxmox's net0" in caught.value.message
    assert "\n" not in caught.value.message


@pytest.mark.parametrize("bridge", ["vmbr0", "vmbr0.100", "my_net-1", "vnet1"])
def test_bridge_names_proxmox_takes_are_kept(bridge: str) -> None:
    assert settings.Profile(bridge=bridge).bridge == bridge
    assert pve_reads(str(plan({}, Target(bridge=bridge)).options["net0"])) == {
        "name": "eth0", "bridge": bridge, "ip": "dhcp", "ip6": "auto"}


# --- rootfs: the profile's storage ---


@pytest.mark.parametrize("storage", ["local-lvm,ro=0", "local-lvm:9", "x", "local lvm", "-local"])
def test_a_rootfs_storage_that_is_no_storage_id_is_a_config_error(storage: str) -> None:
    message = target_refused(Target(rootfs_storage=storage))
    assert message.startswith("the profile's rootfs_storage '")
    assert "cannot go into Proxmox's rootfs" in message


def test_the_rootfs_is_read_back_as_meant() -> None:
    result = plan({"root.readonly": True}, Target(rootfs_storage="local-zfs", disk_gib=3))
    assert pve_reads(str(result.options["rootfs"])) == {UNNAMED: "local-zfs:3", "ro": "1"}


# --- hostname, tags ---


@given(st.text())
def test_any_spec_hostname_becomes_a_dns_name_proxmox_takes(name: str) -> None:
    host = str(plan({"hostname": name} if name else {}).options["hostname"])
    assert properties.why_not_dns_name(host) is None


def test_tags_are_pve_tags_sorted_and_separated_by_semicolons() -> None:
    assert properties.tag_list({"pveoci-started", "pveoci", "pveoci-id-0123456789ab"}) == \
        "pveoci;pveoci-id-0123456789ab;pveoci-started"


@pytest.mark.parametrize("tag", ["a;b", "a,b", "a b", "", "-a", ".a", "a\n", "é"])
def test_a_tag_proxmox_would_split_or_refuse_is_refused(tag: str) -> None:
    with pytest.raises(properties.Refused, match="cannot go into Proxmox's tags"):
        properties.tag_list({"pveoci", tag})


# --- the messages ---


def test_a_shown_value_is_one_short_line() -> None:
    assert properties.shown("/a\x00b\r\n\u2028") == "'/a\\x00b\\x0d\\x0a\\u2028'"
    long = properties.shown("/x" * 100)
    assert len(long) == properties.SHOWN_MAX + 2
    assert long.endswith("...'")
