"""PBX fields to typed values: every body type, array style, spelling and type error."""

# ruff: noqa: RUF001, RUF003 - Cyrillic look-alikes are what these tests are about.
from __future__ import annotations

import json

import pytest

from gateway import forms
from gateway.forms import CreateCall, UpdateCall, parse_call


def urlencoded(text: str, charset: str | None = None) -> CreateCall | UpdateCall:
    return parse_call(forms.from_urlencoded(text.encode(charset or "utf-8"), charset))


def from_json(data: object) -> CreateCall | UpdateCall:
    return parse_call(forms.from_json(json.dumps(data).encode()))


def errors_of(text: str) -> dict[str, str]:
    with pytest.raises(forms.FormError) as caught:
        urlencoded(text)
    return caught.value.fields


def test_published_create_call_example_parses() -> None:
    result = urlencoded(
        "action=create_call&direction=outgoing&phone=777777777&call_status=ringing&comment=start"
    )
    assert result == CreateCall(
        direction="outgoing", phone="777777777", call_status="ringing", comment="start"
    )


def test_published_update_call_example_parses() -> None:
    result = urlencoded(
        "action=update_call&call_id=725&call_status=canceled&user_id=1&comment=missed"
    )
    assert result == UpdateCall(call_id=725, call_status="canceled", user_id=1, comment="missed")


@pytest.mark.parametrize(
    "body",
    [
        "user_ids[]=1&user_ids[]=2",
        "user_ids[0]=1&user_ids[1]=2",
        "user_ids=1&user_ids=2",
        "user_ids%5B%5D=1&user_ids%5B%5D=2",
        "user_ids[ ]=1&user_ids[]=2",
    ],
)
def test_every_array_style_gives_the_same_list(body: str) -> None:
    result = urlencoded("action=create_call&" + body)
    assert isinstance(result, CreateCall)
    assert result.user_ids == (1, 2)


def test_php_index_repeated_keeps_the_last_value() -> None:
    result = urlencoded("action=create_call&group_ids[0]=1&group_ids[0]=3&group_ids[1]=2")
    assert isinstance(result, CreateCall)
    assert result.group_ids == (3, 2)


def test_json_arrays_and_numbers_as_strings() -> None:
    result = from_json(
        {
            "action": "create_call",
            "direction": "incoming",
            "phone": 74951234567,
            "pbx_call_id": 99,
            "pbx_user_ids": [101, "102"],
            "user_ids": ["1", 2],
            "group_ids": [],
        }
    )
    assert result == CreateCall(
        direction="incoming",
        phone="74951234567",
        pbx_call_id="99",
        pbx_user_ids=("101", "102"),
        user_ids=(1, 2),
    )


def test_json_keys_may_carry_php_brackets() -> None:
    result = from_json({"action": "create_call", "user_ids[]": [5], "group_ids[0]": "7"})
    assert isinstance(result, CreateCall)
    assert (result.user_ids, result.group_ids) == ((5,), (7,))


def test_numbers_as_strings_become_integers_and_strings() -> None:
    result = urlencoded("action=update_call&call_id=%20725%20&user_id=%2B1&pbx_user_id=101")
    assert result == UpdateCall(call_id=725, user_id=1, pbx_user_id="101")


def test_integral_json_floats_are_integers() -> None:
    result = from_json({"action": "update_call", "call_id": 725.0, "pbx_call_id": 12.0})
    assert result == UpdateCall(call_id=725, pbx_call_id="12")


def test_cyrillic_lookalikes_in_published_names_are_folded() -> None:
    # "саll_id" and "соmment" as published: Cyrillic с, а and о.
    result = urlencoded("action=update_call&саll_id=725&соmment=hi&call_status=busy")
    assert result == UpdateCall(call_id=725, comment="hi", call_status="busy")


def test_upper_case_and_cyrillic_capitals_are_folded() -> None:
    # ACTION with a Cyrillic А, PHONE with Cyrillic Р, О and Е.
    result = urlencoded("АCTION=create_call&РHОNЕ=1&Direction=INCOMING&USER_IDS[]=4")
    assert result == CreateCall(direction="incoming", phone="1", user_ids=(4,))


def test_cyrillic_lookalikes_in_values_of_choices_are_folded() -> None:
    # "сreate_сall" and "саnсeled" with Cyrillic letters.
    result = urlencoded("action=сreate_сall&call_status=саnсeled&direction=оutgоing")
    assert result == CreateCall(direction="outgoing", call_status="canceled")


def test_unknown_fields_are_ignored() -> None:
    result = urlencoded("action=create_call&phone=1&colour=blue&user_ids[x][y]=1&=3")
    assert result == CreateCall(phone="1")


def test_fields_of_the_other_action_are_ignored() -> None:
    assert urlencoded("action=update_call&call_id=1&user_ids[]=abc&phone=5") == UpdateCall(
        call_id=1
    )


def test_blank_values_count_as_not_given() -> None:
    result = urlencoded("action=create_call&pbx_call_id=&comment=&user_ids[]=&call_status=%20")
    assert result == CreateCall()


def test_json_nulls_count_as_not_given() -> None:
    assert from_json({"action": "update_call", "call_id": None, "user_id": None}) == UpdateCall()


def test_comment_keeps_its_whitespace_and_text_fields_are_trimmed() -> None:
    result = urlencoded("action=create_call&comment=%20two%0Alines%20&phone=%20123%20")
    assert isinstance(result, CreateCall)
    assert (result.comment, result.phone) == (" two\nlines ", "123")


def test_domain_rules_are_left_to_core() -> None:
    # Both of a pair, no phone, no direction: core decides, the gateway passes them on.
    result = urlencoded("action=update_call&call_id=1&pbx_call_id=2&user_id=3&pbx_user_id=4")
    assert result == UpdateCall(call_id=1, pbx_call_id="2", user_id=3, pbx_user_id="4")
    assert urlencoded("action=create_call&user_ids[]=1&group_ids[]=2") == CreateCall(
        user_ids=(1,), group_ids=(2,)
    )


def test_windows_1251_form_is_decoded() -> None:
    result = urlencoded("action=create_call&comment=Привет", charset="windows-1251")
    assert isinstance(result, CreateCall)
    assert result.comment == "Привет"


def test_percent_encoded_utf8_is_decoded() -> None:
    result = urlencoded("action=create_call&comment=%D0%9F%D1%80%D0%B8%D0%B2%D0%B5%D1%82")
    assert isinstance(result, CreateCall)
    assert result.comment == "Привет"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("action=create_call&user_ids[]=abc", "user_ids"),
        ("action=create_call&user_ids[]=1&user_ids[]=1.5", "user_ids"),
        ("action=create_call&group_ids=1,2", "group_ids"),
        ("action=update_call&call_id=abc", "call_id"),
        ("action=update_call&call_id=1e3", "call_id"),
        ("action=update_call&call_id=99999999999999999999", "call_id"),
        ("action=update_call&user_id=one", "user_id"),
        ("action=update_call&call_status=ringin", "call_status"),
        ("action=create_call&direction=inbound", "direction"),
        ("action=delete_call", "action"),
        ("phone=1", "action"),
        ("action=update_call&call_id=1&call_id=2", "call_id"),
        ("action=update_call&call_id[]=1", "call_id"),
        ("action[]=create_call", "action"),
    ],
)
def test_type_errors_name_the_field(body: str, field: str) -> None:
    assert field in errors_of(body)


def test_every_bad_field_is_reported_at_once() -> None:
    fields = errors_of("action=update_call&call_id=x&user_id=y&call_status=z")
    assert set(fields) == {"call_id", "user_id", "call_status"}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"action": "create_call", "phone": True}, "phone"),
        ({"action": "create_call", "phone": {"n": 1}}, "phone"),
        ({"action": "create_call", "user_ids": [[1]]}, "user_ids"),
        ({"action": "create_call", "user_ids": [True]}, "user_ids"),
        ({"action": "create_call", "pbx_user_ids": [{"id": 1}]}, "pbx_user_ids"),
        ({"action": "update_call", "call_id": [1, 2]}, "call_id"),
        ({"action": "update_call", "call_id": [1]}, "call_id"),
        ({"action": "create_call", "comment": [None, None]}, "comment"),
        ({"action": "update_call", "call_id": 1.5}, "call_id"),
        ({"action": "update_call", "call_status": 3}, "call_status"),
        ({"action": ["create_call", "update_call"]}, "action"),
    ],
)
def test_json_type_errors_name_the_field(data: object, field: str) -> None:
    with pytest.raises(forms.FormError) as caught:
        from_json(data)
    assert field in caught.value.fields


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"[1, 2]", b'"text"', b"null", b'{"a": NaN}', b"\xff\xfe{}", b"[" * 100000],
)
def test_json_that_is_not_an_object_is_unparsable(body: bytes) -> None:
    with pytest.raises(forms.UnparsableBody):
        forms.from_json(body)


def test_json_number_overflowing_to_infinity_is_a_type_error() -> None:
    with pytest.raises(forms.FormError) as caught:
        parse_call(forms.from_json(b'{"action": "create_call", "phone": 1e400}'))
    assert "phone" in caught.value.fields


def test_urlencoded_with_broken_utf8_is_unparsable() -> None:
    with pytest.raises(forms.UnparsableBody):
        forms.from_urlencoded(b"action=create_call&comment=%FF%FE")
    with pytest.raises(forms.UnparsableBody):
        forms.from_urlencoded(b"comment=\xff")


def test_unknown_charset_is_refused() -> None:
    with pytest.raises(forms.UnsupportedCharset):
        forms.from_urlencoded(b"a=b", "klingon-8")
    with pytest.raises(forms.UnsupportedCharset):
        forms.from_json(b"{}", "klingon-8")


def test_json_with_a_charset_parameter_is_decoded_by_it() -> None:
    body = json.dumps({"action": "create_call", "comment": "Привет"}, ensure_ascii=False)
    result = parse_call(forms.from_json(body.encode("windows-1251"), "windows-1251"))
    assert isinstance(result, CreateCall)
    assert result.comment == "Привет"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("user_ids[]", ("user_ids", "")),
        ("user_ids[3]", ("user_ids", "3")),
        ("Саll_ID", ("call_id", None)),
        (" phone ", ("phone", None)),
        ("a[b][c]", None),
        ("[]", None),
        ("", None),
    ],
)
def test_field_names(raw: str, expected: tuple[str, str | None] | None) -> None:
    assert forms.field_name(raw) == expected
