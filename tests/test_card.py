"""The card (pveoci.card): what `list` needs of a container, in one PVE tag, read back exactly."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from pveoci import card, marker
from pveoci.card import Card

PVE_TAG = re.compile(r"^[a-z0-9_][a-z0-9_\-+.]*$")   # PVE's pve-tag format, as PVE stores it (lower case)
IDS = st.from_regex(r"[A-Za-z0-9_+.-]{1,80}", fullmatch=True)
TEXT = st.text(min_size=1, max_size=60)


def cards() -> st.SearchStrategy[Card]:
    return st.builds(
        Card, id=IDS, bundle=TEXT, created=st.one_of(
            st.from_regex(r"20\d\d-[01]\d-[0-3]\dT[0-2]\d:[0-5]\d:[0-5]\d\.\d{9}Z", fullmatch=True), TEXT),
        template=TEXT, rootfs=TEXT, version=st.integers(1, 9),
        stop_signal=st.sampled_from(["SIGTERM", "SIGINT", "SIGUSR1", "SIGRTMIN+3"]),
        annotations=st.dictionaries(TEXT, TEXT, max_size=3))


@settings(max_examples=60, deadline=None)
@given(cards())
def test_a_card_reads_back_as_written_and_is_a_valid_tag(written: Card) -> None:
    tag = card.tag(written)
    if tag is None:
        return  # too long for a tag: list reads that container's description
    assert PVE_TAG.match(tag)
    assert tag == tag.lower()
    assert card.parse(("pveoci", tag, "pveoci-started")) == written


def test_a_usual_card_is_short_and_readable() -> None:
    usual = Card(id="web1", bundle="/home/alice/bundles/web", created="2026-12-06T10:11:12.123456789Z",
                 template="local:vztmpl/pveoci-d4f65ccfb8c137f8.tar.zst", rootfs="/home/alice/bundles/web/rootfs",
                 version=2)
    tag = card.tag(usual)
    assert tag == ("pveoci-card+2+web1+_2fhome_2falice_2fbundles_2fweb+20261206101112123456789+"
                   "local_3avztmpl_2fpveoci-d4f65ccfb8c137f8.tar.zst+++")
    assert card.parse([tag]) == usual


def test_a_card_too_long_for_a_tag_is_not_written() -> None:
    assert card.tag(Card(id="a" * 500, bundle="/b", created="x", template="t", rootfs="/b/rootfs", version=2)) is None


def test_what_is_not_a_card_reads_as_none() -> None:
    for tags in ((), ("pveoci",), ("pveoci-card+2+web1",), ("pveoci-card+2+a_zz+b+c+d+++",),
                 ("pveoci-card+x+a+b+c+d+++",), ("pveoci-card+2+a+b+c+d+++_5b_5d",)):
        assert card.parse(tags) is None, tags


def test_the_card_of_a_description_says_what_its_marker_says() -> None:
    mark = marker.Marker(id="Web.1", bundle="/srv/b", rootfs="/srv/b/root", template="local:vztmpl/x.tar.zst",
                         spec_digest="d", created="2026-12-06T10:11:12.123456789Z", host="ws",
                         annotations={"team": "blue"}, stop_signal="SIGINT")
    (tag,) = card.for_description(marker.render(mark))
    assert card.parse([tag]) == Card(id="Web.1", bundle="/srv/b", created=mark.created, template=mark.template,
                                     rootfs="/srv/b/root", version=mark.version, stop_signal="SIGINT",
                                     annotations={"team": "blue"})
    assert card.for_description("not a marker") == set()
