"""The ownership marker survives any value: any Unicode in ids, annotations and paths comes back as it went,
no value closes its HTML comment early, markers pveoci 0.2 wrote are still read (and it reads ours), and a block
that cannot be read is said to be so, never taken for "not pveoci's"."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pveoci import errors, marker

MARK = marker.Marker(id="web", bundle="/home/me/bundles/web", rootfs="/home/me/bundles/web/rootfs",
                     template="local:vztmpl/pveoci-a106e4e927237c49.tar.zst", spec_digest="sha256:abc",
                     created="2026-11-28T10:29:25.469644000Z", host="laptop",
                     annotations={"org.opencontainers.image.stopSignal": "SIGQUIT"}, stop_signal="SIGQUIT")
HOSTILE = ["} -->", "-->", "<!--", "<!-- pveoci {\"id\":\"other\"} -->", "--!>", "a\nb\r\n", "\x00", "`code`",
           "</details><script>x</script>", "\u2028\u2029", "é中😀", "\\u003e", "\"", "}" * 50]


def render_0_2(mark: marker.Marker) -> str:
    """The description pveoci 0.2 wrote: its JSON unescaped."""
    data = json.dumps(mark.to_json(), sort_keys=True, separators=(",", ":"))
    return marker.HEADER.format(id=mark.id) + "\n\n<!-- pveoci " + data + " -->\n"


def parse_0_2(description: str) -> marker.Marker | None:
    """How pveoci 0.2 read a description (a workstation not yet upgraded)."""
    found = re.search(r"<!-- pveoci (\{.*?\}) -->", description, re.S)
    if not found:
        return None
    try:
        data = json.loads(found.group(1))
        return marker.Marker(**{k: v for k, v in data.items() if k in marker.Marker.__dataclass_fields__})
    except (ValueError, TypeError):
        return None


def assert_safe(text: str) -> None:
    """One comment, closed where the block ends, nothing in it a markdown or HTML reader could take for syntax."""
    assert len(text) <= marker.DESCRIPTION_MAX
    assert text.count("<!--") == 1
    assert text.count("-->") == 1
    assert text.endswith(" -->\n")
    header, block = text.split("\n\n", 1)
    assert "\n" not in header
    assert "\r" not in header
    inner = block.removeprefix(marker.OPENING).removesuffix(" -->\n")
    assert inner.isascii()
    assert inner.isprintable()
    assert not set(inner) & set("<>&`")


@pytest.mark.parametrize("value", HOSTILE)
def test_an_annotation_of_any_text_comes_back_and_leaves_the_comment_closed_where_it_ends(value: str) -> None:
    mark = replace(MARK, annotations={"note": value, value: "key"})
    text = marker.render(mark)
    assert_safe(text)
    assert marker.parse(text) == mark


text_values = st.text(max_size=40)
markers = st.builds(marker.Marker, id=text_values, bundle=text_values, template=text_values,
                    spec_digest=text_values, created=text_values, host=text_values,
                    annotations=st.dictionaries(text_values, text_values, max_size=4),
                    stop_signal=text_values, version=st.integers(0, 2**63), rootfs=text_values)


@settings(max_examples=300)
@given(markers)
def test_any_unicode_in_any_field_round_trips(mark: marker.Marker) -> None:
    text = marker.render(mark)
    assert_safe(text)
    assert marker.parse(text) == mark


@given(markers, st.text())
def test_notes_added_after_the_block_change_nothing(mark: marker.Marker, notes: str) -> None:
    assert marker.parse(marker.render(mark) + notes) == mark


@given(markers)
def test_a_workstation_on_0_2_reads_the_markers_written_now(mark: marker.Marker) -> None:
    assert parse_0_2(marker.render(mark)) == mark


@pytest.mark.parametrize("value", HOSTILE)
def test_a_marker_0_2_wrote_is_read_even_with_an_annotation_that_broke_its_own_reader(value: str) -> None:
    mark = replace(MARK, annotations={"note": value})
    assert marker.parse(render_0_2(mark)) == mark


def test_a_marker_of_ordinary_values_is_written_as_0_2_wrote_it() -> None:
    # The same bytes for what 0.2 wrote safely: recorded cassettes and other workstations see no change.
    assert marker.render(MARK) == render_0_2(MARK)


@pytest.mark.parametrize("description", [None, "", "notes of a container pveoci never made",
                                         "Managed by pveoci (OCI container `web`). Edit it with pveoci, not here."])
def test_a_description_without_a_block_has_no_marker(description: str | None) -> None:
    assert marker.parse(description) is None


BROKEN = {
    "cut short": render_0_2(MARK)[:-30],
    "not json": "<!-- pveoci {id: web} -->",
    "not closed": render_0_2(MARK).replace(" -->", " ->"),
    "a list": "<!-- pveoci [] -->",
    "lacks fields": '<!-- pveoci {"id":"web"} -->',
    "wrong types": render_0_2(replace(MARK, annotations=["a"])),  # type: ignore[arg-type]
    "a text version": render_0_2(replace(MARK, version="2")),  # type: ignore[arg-type]
    "nested too deep": "<!-- pveoci {\"a\":" + "[" * 5000 + "]" * 5000 + "} -->",
}


@pytest.mark.parametrize("description", list(BROKEN.values()), ids=list(BROKEN))
def test_a_block_that_cannot_be_read_is_unreadable_not_none(description: str) -> None:
    with pytest.raises(errors.MarkerUnreadable) as caught:
        marker.parse(description)
    assert caught.value.message.startswith("the ownership marker cannot be read: ")
    assert "\n" not in caught.value.message
    assert caught.value.exit_code == 31


def test_annotations_too_long_for_the_notes_are_dropped_and_said_so() -> None:
    mark = replace(MARK, annotations={f"k{i}": "<>" * 200 for i in range(20)})
    text = marker.render(mark)
    assert_safe(text)
    assert marker.parse(text) == replace(mark, annotations={"pveoci.truncated": "true"})


def test_paths_too_long_for_the_notes_are_a_bundle_error_before_anything_is_made() -> None:
    long = "/" + "é" * 2000
    with pytest.raises(errors.BundleError, match="too long for the container's ownership marker"):
        marker.check_fits("web", long, long + "/rootfs")
    with pytest.raises(errors.BundleError, match="too long for the container's ownership marker"):
        marker.render(replace(MARK, bundle=long, rootfs=long + "/rootfs"))


def test_check_fits_leaves_room_for_what_a_create_adds() -> None:
    marker.check_fits("web", "/b" * 1800, "/b" * 1800 + "/rootfs")
    with pytest.raises(errors.BundleError):
        marker.check_fits("web", "/b" * 2000, "/b" * 2000 + "/rootfs")
