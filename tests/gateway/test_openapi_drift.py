"""The served OpenAPI document against what it describes: the app's routes and the proto enums."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from gateway.app import GatewayApp, create_app
from gateway.config import Config
from gateway.openapi import PROTO_ENUMS, SOURCE_PATH, build_document
from telephony.v1 import call_pb2, call_service_pb2

PROTOS: dict[str, EnumTypeWrapper] = {
    "call_status": call_pb2.Call.State,
    "direction": call_pb2.Direction,
    "recording_format": call_pb2.Recording.Format,
    "callback_state": call_service_pb2.Callback.State,
    "callback_resolution": call_service_pb2.Callback.Resolution,
    "employee_state": call_service_pb2.EmployeeState.State,
}

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _enums(node: Any) -> Iterator[list[Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            yield node["enum"]
        for value in node.values():
            yield from _enums(value)
    elif isinstance(node, list):
        for value in node:
            yield from _enums(value)


def _proto_names(enum: EnumTypeWrapper) -> list[str]:
    """STATE_IN_PROGRESS -> in-progress, without the STATE_UNSPECIFIED zero."""
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    return [
        value.name.removeprefix(prefix).lower().replace("_", "-")
        for value in enum.DESCRIPTOR.values
        if value.number != 0
    ]


@pytest.fixture
def routes(monkeypatch: pytest.MonkeyPatch, config: Config) -> dict[str, set[str]]:
    """Every route the app adds, with the HTTP methods its resource answers."""
    added: dict[str, set[str]] = {}
    add_route = GatewayApp.add_route

    def recording(app: GatewayApp, uri_template: str, resource: object, **kwargs: Any) -> None:
        methods = {method for method in HTTP_METHODS if hasattr(resource, f"on_{method}")}
        added[uri_template] = methods
        add_route(app, uri_template, resource, **kwargs)

    monkeypatch.setattr(GatewayApp, "add_route", recording)
    create_app(config)
    return added


async def test_every_route_is_documented_and_every_documented_path_is_routed(
    routes: dict[str, set[str]],
) -> None:
    paths = build_document()["paths"]
    documented = {
        path: {method for method in operations if method in HTTP_METHODS}
        for path, operations in paths.items()
    }
    assert routes, "no route was recorded"
    assert documented == routes


def test_every_enum_the_source_may_name_is_a_proto_enum() -> None:
    assert set(PROTO_ENUMS) == set(PROTOS)


def _names_of(enum: list[Any]) -> list[Any]:
    # Blank ("" in forms) and null are accepted beside the names, never instead of one.
    return [value for value in enum if value not in ("", None)]


@pytest.mark.parametrize("concept", sorted(PROTOS))
def test_every_proto_enum_is_documented(concept: str) -> None:
    names = _proto_names(PROTOS[concept])
    assert names in [_names_of(enum) for enum in _enums(build_document())], concept


def test_documented_enums_are_the_proto_enums() -> None:
    # Concepts may share a name (a call and an employee are both `ringing`): an enum
    # listing any proto name is one concept's names, exactly and in order.
    every_list = [_proto_names(enum) for enum in PROTOS.values()]
    every_name = {name for names in every_list for name in names}
    uses = [enum for enum in _enums(build_document()) if set(enum) & every_name]
    assert uses
    for enum in uses:
        assert _names_of(enum) in every_list, enum


def test_the_source_names_proto_enums_instead_of_listing_them() -> None:
    source = json.loads(SOURCE_PATH.read_text(encoding="utf-8"))
    every_name = {name for enum in PROTOS.values() for name in _proto_names(enum)}
    for enum in _enums(source):
        assert not set(enum) & every_name, enum
