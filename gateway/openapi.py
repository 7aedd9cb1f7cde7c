"""The OpenAPI document served at /openapi.json, built at start from openapi_source.json.

The source writes each repeated schema once, under `x-fragments`, and names its enums of
call statuses, directions, recording formats, callback and employee states instead of listing
them: the values come from the proto enums, so the document cannot disagree with what core
sends and accepts.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import falcon
import falcon.asgi

from vocabulary import (
    CALLBACK_RESOLUTION,
    CALLBACK_STATE,
    DIRECTION,
    EMPLOYEE_STATE,
    FORMAT,
    STATUS,
)

SOURCE_PATH = pathlib.Path(__file__).with_name("openapi_source.json")
_FRAGMENT = "#/x-fragments/"

# The concepts the source's `x-enum` may name.
PROTO_ENUMS: dict[str, tuple[str, ...]] = {
    "call_status": STATUS.names,
    "direction": DIRECTION.names,
    "recording_format": FORMAT.names,
    "callback_state": CALLBACK_STATE.names,
    "callback_resolution": CALLBACK_RESOLUTION.names,
    "employee_state": EMPLOYEE_STATE.names,
}


def build_document() -> dict[str, Any]:
    """The served document: fragments inlined, enums filled from the protos."""
    source = json.loads(SOURCE_PATH.read_text(encoding="utf-8"))
    fragments = source.pop("x-fragments", {})
    document: dict[str, Any] = _expand(source, fragments)
    return document


def _expand(node: Any, fragments: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_expand(item, fragments) for item in node]
    if not isinstance(node, dict):
        return node
    node = _inline_fragment(node, fragments)
    if not isinstance(node, dict):
        return _expand(node, fragments)
    node = dict(node)
    concept = node.pop("x-enum", None)
    also = node.pop("x-enum-also", [])
    if concept is not None:
        node["enum"] = [*PROTO_ENUMS[concept], *also]
    return {key: _expand(value, fragments) for key, value in node.items()}


def _inline_fragment(node: dict[str, Any], fragments: dict[str, Any]) -> Any:
    """A reference to a fragment becomes its copy; keys beside the reference are kept over it."""
    while isinstance(node, dict) and str(node.get("$ref", "")).startswith(_FRAGMENT):
        fragment = fragments[node["$ref"].removeprefix(_FRAGMENT)]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if not siblings:
            node = fragment
        elif isinstance(fragment, dict):
            node = {**fragment, **siblings}
        else:
            raise ValueError(f"{node['$ref']} is not an object: nothing can be added to it")
    return node


class OpenApiResource:
    """The document, built once at start."""

    def __init__(self) -> None:
        self._data = json.dumps(build_document(), indent=2, ensure_ascii=False).encode()

    async def on_get(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._data
