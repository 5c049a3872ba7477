"""Shared resources across generations: made once per key, closed when the last holder lets go."""

from __future__ import annotations

from edge.leases import Shared


class Thing:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0


async def close(thing: Thing) -> None:
    thing.closed += 1


async def test_a_key_two_generations_ask_for_is_made_once_and_closed_after_both() -> None:
    shared = Shared()
    first, second = shared.lease(), shared.lease()
    made: list[Thing] = []

    def make() -> Thing:
        made.append(Thing("channel"))
        return made[-1]

    one = first.take(("channel", "a"), make, close)
    two = second.take(("channel", "a"), make, close)
    assert one is two and len(made) == 1
    await first.release()
    assert one.closed == 0  # the second generation still uses it
    await second.release()
    assert one.closed == 1
    assert ("channel", "a") not in shared


async def test_a_changed_key_is_a_new_object_and_the_old_one_closes_with_its_generation() -> None:
    shared = Shared()
    old, new = shared.lease(), shared.lease()
    before = old.take("upstream@1", lambda: Thing("1"), close)
    after = new.take("upstream@2", lambda: Thing("2"), close)
    assert before is not after
    await old.release()
    assert before.closed == 1 and after.closed == 0
    assert len(shared) == 1


async def test_a_lease_holds_a_key_once_however_often_it_asks() -> None:
    shared = Shared()
    lease, other = shared.lease(), shared.lease()
    thing = lease.take("k", lambda: Thing("k"), close)
    assert lease.take("k", lambda: Thing("again"), close) is thing
    other.take("k", lambda: Thing("other"), close)
    await lease.release()
    assert thing.closed == 0  # one hold released, the other's remains
    await other.release()
    assert thing.closed == 1
    await lease.release()  # releasing twice is harmless
    assert thing.closed == 1


async def test_a_failed_make_holds_nothing() -> None:
    shared = Shared()
    lease = shared.lease()

    def fail() -> Thing:
        raise OSError("unreadable")

    try:
        lease.take("k", fail, close)
    except OSError:
        pass
    assert "k" not in shared
    await lease.release()


async def test_a_close_that_fails_does_not_keep_the_others_open() -> None:
    shared = Shared()
    lease = shared.lease()
    good = lease.take("good", lambda: Thing("good"), close)

    async def broken(thing: Thing) -> None:
        raise RuntimeError("boom")

    lease.take("bad", lambda: Thing("bad"), broken)
    await lease.release()
    assert good.closed == 1


async def test_close_at_shutdown_closes_what_generations_still_hold() -> None:
    shared = Shared()
    thing = shared.lease().take("k", lambda: Thing("k"), close)
    await shared.close()
    assert thing.closed == 1 and len(shared) == 0
