"""edge.routing.table, pinned where mutation testing found the tests loose.

A ``**`` tail matches no segment at all, and that holds before a verb too: the last
segment is then the verb alone (``:stat``), which must still be read as a verb.
"""

from __future__ import annotations

from edge.routing.table import RouteMatch, RouteTable
from edge.routing.template import parse_template


def test_an_empty_tail_before_a_verb() -> None:
    table: RouteTable[str] = RouteTable()
    table.add("GET", parse_template("/v1/files/{resource=**}:stat"), "stat")
    found = table.match("GET", "/v1/files/:stat")
    assert type(found) is RouteMatch
    assert (found.target, found.bindings) == ("stat", ((("resource",), ""),))
