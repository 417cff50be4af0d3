"""Settings that are valid but extreme: the runtime copes with them in the time and memory a create takes."""

from __future__ import annotations

import time
from pathlib import Path

from tests.guards import memory_cap
from tests.runtime.conftest import MakeRuntime, tiny_bundle


def test_a_vmid_range_of_most_of_pves_vmids_picks_one_without_listing_them(make_runtime: MakeRuntime,
                                                                           tmp_path: Path) -> None:
    rt = make_runtime(vmid_range="100-999999999")
    with memory_cap():  # 0.2 listed every free VMID of the range first: 900 million of them
        first = rt.create("c0", tiny_bundle(tmp_path / "b0")).vmid  # imports and first-time work before the clock
        began = time.monotonic()
        second = rt.create("c1", tiny_bundle(tmp_path / "b1")).vmid
        took = time.monotonic() - began
    assert took < 5.0
    assert {first, second} <= set(range(100, 164))
    assert first != second
