from __future__ import annotations

from edge.upstream.endpoints import Endpoint, EndpointPicker


def picker() -> EndpointPicker:
    return EndpointPicker([Endpoint("a", "a"), Endpoint("b", "b"), Endpoint("c", "c")], 2, 10.0)


def test_round_robin() -> None:
    p = picker()
    assert [p.pick(0).base for _ in range(5)] == ["a", "b", "c", "a", "b"]


def test_ejection_and_return() -> None:
    p = picker()
    b = p.endpoints[1]
    assert not p.failed(b, 1.0)
    assert p.failed(b, 1.0)  # the second failure in a row ejects it
    assert [p.pick(2.0).base for _ in range(4)] == ["a", "c", "a", "c"]
    assert "b" in [p.pick(11.0).base for _ in range(3)]  # back after eject_for


def test_a_success_resets_the_count() -> None:
    p = picker()
    a = p.endpoints[0]
    p.failed(a, 0.0)
    p.succeeded(a)
    assert not p.failed(a, 0.0)


def test_all_ejected_uses_the_first_to_return() -> None:
    p = picker()
    for offset, endpoint in enumerate(p.endpoints):
        p.failed(endpoint, float(offset))
        p.failed(endpoint, float(offset))
    assert p.pick(5.0).base == "a"


def test_a_single_endpoint_is_never_ejected() -> None:
    p = EndpointPicker([Endpoint("a", "a")], 1, 10.0)
    assert not p.failed(p.endpoints[0], 0.0)
    assert p.pick(0.0).base == "a"
