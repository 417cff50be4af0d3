"""A recording keeps only the round of a polling loop that ended it (pveoci.retry tells it where loops are)."""

from __future__ import annotations

import threading

from pveoci import retry
from pveoci.testing.log import RecordLog


def test_only_the_round_that_ended_a_poll_is_kept_in_order() -> None:
    log = RecordLog()
    answers = iter([None, None, "done"])

    def check() -> str | None:
        log.add("http", {"round": "asked"})
        return next(answers)

    with retry.watching(log):
        log.add("http", {"before": 1})
        assert retry.poll(check, timeout=10, what="x", sleep=lambda _s: None) == "done"
        log.add("ssh", {"after": 1})
    assert log.entries == [("http", {"before": 1}), ("http", {"round": "asked"}), ("ssh", {"after": 1})]


def test_a_poll_inside_a_round_and_other_threads_keep_their_own_entries() -> None:
    log = RecordLog()
    outer = iter([None, "outer done"])

    def outer_check() -> str | None:
        inner = [None, "inner done"]

        def inner_check() -> str | None:
            log.add("http", {"inner": len(inner)})
            return inner.pop(0)

        retry.poll(inner_check, timeout=10, what="inner", sleep=lambda _s: None)
        thread = threading.Thread(target=log.add, args=("ssh", {"other thread": True}))
        thread.start()
        thread.join()
        return next(outer)

    with retry.watching(log):
        retry.poll(outer_check, timeout=10, what="outer", sleep=lambda _s: None)
    # The other thread polls nothing: both its entries stay; of this thread's rounds, only the last.
    assert log.entries == [("ssh", {"other thread": True}), ("ssh", {"other thread": True}), ("http", {"inner": 1})]


def test_without_a_watcher_polling_is_unchanged() -> None:
    answers = iter([None, 5])
    assert retry.poll(lambda: next(answers), timeout=10, what="x", sleep=lambda _s: None) == 5
