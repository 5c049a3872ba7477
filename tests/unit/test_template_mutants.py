"""edge.routing.template, pinned where mutation testing found the tests loose.

``edge check`` prints these problems to whoever wrote the proto, so they are held word for
word (test_template.py's table checks that each contains a phrase).
"""

from __future__ import annotations

import pytest

from edge.routing.template import TemplateError, parse_template


@pytest.mark.parametrize(
    ("text", "offset", "problem"),
    [
        ("/v1/**/x", 0, "'**' is only allowed as the last segment"),
        ("/v1/{a={b}}", 7, "variables cannot be nested"),
        ("/v1/{9}", 5, "expected a field name"),
        ("/v1/{a}/{a}", 0, "field 'a' is bound twice"),
    ],
)
def test_problems_are_named_exactly(text: str, offset: int, problem: str) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_template(text)
    assert (caught.value.position, caught.value.problem) == (offset, problem)
