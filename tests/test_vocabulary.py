"""The wire names come from the proto enums alone, and core's domain rules agree with them:
a proto change without the matching domain change fails here."""

from __future__ import annotations

import json
import re

import pytest
from falcon.testing import ASGIConductor
from google.protobuf.descriptor import EnumDescriptor

import vocabulary
from core import domain
from core.auth import Role
from core.rpc import decode, encode
from gateway import forms
from gateway.agent_vocabulary import AGENT_VOCABULARY_PATH, script
from gateway.app import create_app
from gateway.config import Config
from gateway.health import AGENT_PAGE_PATH
from telephony.v1 import call_pb2, call_service_pb2, directory_service_pb2
from vats_cli import render
from vats_lifetime.launcher import PROJECT_DIR

ENUMS = [
    (vocabulary.STATUS, call_pb2.Call.State.DESCRIPTOR),
    (vocabulary.DIRECTION, call_pb2.Direction.DESCRIPTOR),
    (vocabulary.FORMAT, call_pb2.Recording.Format.DESCRIPTOR),
    (vocabulary.CARD_EVENT, call_service_pb2.CallCardEvent.Type.DESCRIPTOR),
    (vocabulary.ROLE, directory_service_pb2.Role.DESCRIPTOR),
]


# PBXs and scripts send and read these: renaming or removing a proto value must not change
# them unseen. A new value adds a name without touching this list.
PUBLISHED = {
    "status": (
        vocabulary.STATUS,
        ("ringing", "in-progress", "canceled", "missed", "failed", "answered", "busy"),
    ),
    "direction": (vocabulary.DIRECTION, ("incoming", "outgoing")),
    "format": (vocabulary.FORMAT, ("mp3", "mp4", "wav", "ogg")),
    "card-event": (vocabulary.CARD_EVENT, ("show", "update", "hide", "reset")),
    "role": (vocabulary.ROLE, ("admin", "service", "employee", "supervisor")),
}


@pytest.mark.parametrize(("names", "published"), PUBLISHED.values(), ids=PUBLISHED.keys())
def test_the_http_api_keeps_its_published_names(
    names: vocabulary.WireNames[int], published: tuple[str, ...]
) -> None:
    assert [name for name in published if name not in names] == []


def test_the_active_statuses_are_the_published_ones() -> None:
    assert vocabulary.ACTIVE_STATUSES == ("ringing", "in-progress")


@pytest.mark.parametrize(("names", "enum"), ENUMS, ids=[enum.full_name for _, enum in ENUMS])
def test_every_proto_value_but_unspecified_has_a_name_both_ways(
    names: vocabulary.WireNames[int], enum: EnumDescriptor
) -> None:
    numbers = [value.number for value in enum.values if value.number != 0]
    assert len(names.names) == len(numbers)
    for number in numbers:
        name = names.name(number)
        assert name is not None and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", name)
        assert names.number(name) == number


def test_unspecified_and_unknown_values_have_no_name() -> None:
    assert vocabulary.STATUS.name(call_pb2.Call.STATE_UNSPECIFIED) is None
    assert vocabulary.STATUS.name(999) is None
    assert vocabulary.STATUS.number("STATE_RINGING") == call_pb2.Call.STATE_UNSPECIFIED
    assert vocabulary.DIRECTION.number(None) == call_pb2.DIRECTION_UNSPECIFIED
    assert "in-progress" in vocabulary.STATUS
    assert "in_progress" not in vocabulary.STATUS


def test_domain_statuses_are_the_protos() -> None:
    assert tuple(domain.Status) == vocabulary.STATUS.names


def test_domain_active_rule_is_the_contracts() -> None:
    assert set(vocabulary.ACTIVE_STATUSES) == domain.ACTIVE_STATUSES
    assert {s for s in domain.Status if s.is_active} == set(vocabulary.ACTIVE_STATUSES)


def test_domain_directions_are_the_protos() -> None:
    assert tuple(domain.Direction) == vocabulary.DIRECTION.names


def test_domain_card_changes_are_the_protos_card_events() -> None:
    # A reset is the stream's own event (it could not resume), never a change of one card.
    assert set(domain.CardChange) == set(vocabulary.CARD_EVENT.names) - {"reset"}


def test_token_roles_are_the_protos() -> None:
    assert tuple(Role) == vocabulary.ROLE.names


@pytest.mark.parametrize("status", list(domain.Status))
def test_core_converts_each_status_both_ways(status: domain.Status) -> None:
    assert decode.status_from_proto(encode.state_of(status)) == status


def test_the_gateway_accepts_exactly_the_vocabularys_statuses() -> None:
    for name in vocabulary.STATUS.names:
        form = forms.RawForm()
        form.add("action", "create_call")
        form.add("call_status", name.upper())
        parsed = forms.parse_call(form)
        assert isinstance(parsed, forms.CreateCall) and parsed.call_status == name


def test_the_cli_names_statuses_as_the_http_api() -> None:
    assert render.status_name(call_pb2.Call.STATE_IN_PROGRESS) == "in-progress"
    assert render.status_name(call_pb2.Call.STATE_UNSPECIFIED) == "-"
    assert render.direction_name(call_pb2.DIRECTION_OUTGOING) == "outgoing"


def test_the_agent_page_script_carries_the_vocabulary() -> None:
    text = script().decode()
    match = re.search(r"window\.VATS_VOCABULARY = Object\.freeze\((.*)\);", text)
    assert match is not None
    assert json.loads(match.group(1)) == {
        "statuses": list(vocabulary.STATUS.names),
        "activeStatuses": list(vocabulary.ACTIVE_STATUSES),
        "directions": list(vocabulary.DIRECTION.names),
    }


async def test_the_gateway_serves_the_agent_vocabulary_for_revalidation() -> None:
    async with ASGIConductor(create_app(Config({}))) as gateway:
        first = await gateway.simulate_get(AGENT_VOCABULARY_PATH)
        assert first.status_code == 200
        assert first.headers["Content-Type"].startswith("text/javascript")
        assert first.headers["Cache-Control"] == "no-cache"
        assert first.content == script()
        again = await gateway.simulate_get(
            AGENT_VOCABULARY_PATH, headers={"If-None-Match": first.headers["ETag"]}
        )
        assert again.status_code == 304
        assert again.content == b""


def test_the_agent_page_loads_the_vocabulary_before_its_script() -> None:
    html = AGENT_PAGE_PATH.read_text(encoding="utf-8")
    assert html.index(f'src="{AGENT_VOCABULARY_PATH}"') < html.index('src="/static/agent.js"')


# The documents that state which endings open a callback, in prose a person writes.
CALLBACK_RULE_DOCUMENTS = [
    "README.md",
    "gateway/openapi_source.json",
    "proto/telephony/v1/call_service.proto",
]


@pytest.mark.parametrize("path", CALLBACK_RULE_DOCUMENTS)
def test_the_documents_name_the_endings_that_open_a_callback(path: str) -> None:
    # domain.UNANSWERED_STATUSES is the rule; a status added to it (or taken out) must show
    # in every sentence that lists them ("an incoming call that ends missed, ... or failed").
    text = (PROJECT_DIR / path).read_text(encoding="utf-8")
    text = re.sub(r"\s*\n\s*(//)?\s*", " ", text.replace("`", ""))
    name = "(?:{})".format("|".join(map(re.escape, sorted(vocabulary.STATUS, key=len)[::-1])))
    lists = re.findall(rf"\bend(?:s|ed) ({name}(?:(?:, | or ){name})+)\b", text)
    assert lists, f"{path} no longer lists the endings that open a callback"
    rule = {status.value for status in domain.UNANSWERED_STATUSES}
    assert [set(re.split(r", | or ", found)) for found in lists] == [rule] * len(lists)
