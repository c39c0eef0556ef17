"""Group commit: items submitted while a write is in flight go out together, each submit returns only
once its own item is written, and a failed write fails every submit of its group and no other."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import pytest

from app.groupcommit import GroupCommit
from tests.support import wait_until


class GatedWriter:
    """Records each group it is asked to write; the first write waits until ``release`` is called."""

    def __init__(self, fail_on: Callable[[Sequence[int]], bool] = lambda group: False) -> None:
        self.groups: list[list[int]] = []
        self.started = threading.Event()
        self.gate = threading.Event()
        self.fail_on = fail_on

    def __call__(self, group: Sequence[int]) -> None:
        if not self.groups:
            self.started.set()
            assert self.gate.wait(10), "the test never opened the gate"
        self.groups.append(list(group))
        if self.fail_on(group):
            raise ConnectionError(f"lost writing {list(group)}")

    def release(self) -> None:
        self.gate.set()


Outcomes = dict[int, BaseException | None]


def submit_in_threads(commit: GroupCommit[int], items: Sequence[int], outcomes: Outcomes) -> None:
    """Submit each item from its own thread (started, not joined); outcomes fill in as they return."""

    def run(item: int) -> None:
        try:
            commit.submit(item)
        except BaseException as exc:
            outcomes[item] = exc
        else:
            outcomes[item] = None

    for item in items:
        threading.Thread(target=run, args=(item,), daemon=True).start()


def waiting(commit: GroupCommit[int]) -> int:
    """How many submitted items wait for the write in flight."""
    return len(commit._waiting)


def test_a_lone_submit_is_written_at_once_as_a_group_of_one() -> None:
    written: list[list[int]] = []
    commit: GroupCommit[int] = GroupCommit(lambda group: written.append(list(group)))
    commit.submit(1)
    commit.submit(2)
    assert written == [[1], [2]]
    assert (commit.groups, commit.items) == (2, 2)


def test_items_submitted_during_a_write_go_out_together_in_the_next_one() -> None:
    writer = GatedWriter()
    commit: GroupCommit[int] = GroupCommit(writer)
    first: Outcomes = {}
    rest: Outcomes = {}
    submit_in_threads(commit, [0], first)
    assert writer.started.wait(10)
    submit_in_threads(commit, range(1, 9), rest)
    wait_until(lambda: waiting(commit) == 8, timeout=10, what="eight submits queued behind the write")
    assert not first
    assert not rest
    writer.release()
    wait_until(lambda: len(first) + len(rest) == 9, timeout=10, what="every submit returning")
    assert writer.groups[0] == [0]
    assert sorted(writer.groups[1]) == list(range(1, 9))
    assert len(writer.groups) == 2
    assert set(first.values()) | set(rest.values()) == {None}


def test_a_group_holds_at_most_max_items_and_the_rest_follow() -> None:
    writer = GatedWriter()
    commit: GroupCommit[int] = GroupCommit(writer, max_items=3)
    done: Outcomes = {}
    submit_in_threads(commit, [0], done)
    assert writer.started.wait(10)
    submit_in_threads(commit, range(1, 8), done)
    wait_until(lambda: waiting(commit) == 7, timeout=10, what="seven submits queued")
    writer.release()
    wait_until(lambda: len(done) == 8, timeout=10, what="every submit returning")
    assert [len(group) for group in writer.groups] == [1, 3, 3, 1]
    assert sorted(item for group in writer.groups for item in group) == list(range(8))


def test_a_failed_write_fails_every_submit_of_its_group_and_no_other() -> None:
    writer = GatedWriter(fail_on=lambda group: 1 in group)
    commit: GroupCommit[int] = GroupCommit(writer)
    done: Outcomes = {}
    submit_in_threads(commit, [0], done)
    assert writer.started.wait(10)
    submit_in_threads(commit, [1, 2, 3], done)
    wait_until(lambda: waiting(commit) == 3, timeout=10, what="three submits queued")
    writer.release()
    wait_until(lambda: len(done) == 4, timeout=10, what="every submit returning")
    assert done[0] is None
    errors = [done[item] for item in (1, 2, 3)]
    assert all(isinstance(error, ConnectionError) for error in errors)
    assert len({id(error) for error in errors}) == 3  # each thread raises its own copy
    commit.submit(4)  # the failure left nothing stuck: the next submit writes at once
    assert writer.groups[-1] == [4]


def test_an_error_in_a_lone_write_is_raised_to_its_submitter() -> None:
    def fail(group: Sequence[int]) -> None:
        raise TimeoutError("redis timed out")

    commit: GroupCommit[int] = GroupCommit(fail)
    with pytest.raises(TimeoutError):
        commit.submit(1)
    with pytest.raises(TimeoutError):
        commit.submit(2)


def test_many_threads_each_see_their_own_item_written_exactly_once() -> None:
    written: list[int] = []
    lock = threading.Lock()

    def write(group: Sequence[int]) -> None:
        with lock:
            written.extend(group)

    commit: GroupCommit[int] = GroupCommit(write, max_items=4)
    errors: list[BaseException] = []

    def run(base: int) -> None:
        try:
            for n in range(200):
                commit.submit(base * 1000 + n)
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert sorted(written) == sorted(t * 1000 + n for t in range(8) for n in range(200))
    assert commit.items == 1600
