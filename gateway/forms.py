"""PBX request fields to typed create_call / update_call values.

Field names are folded (Cyrillic look-alikes to Latin, lower case) and array
suffixes (`x[]`, `x[0]`) dropped; values are checked for type only. Which fields
are required and which exclude each other is core's business, not this module's.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Final, NoReturn
from urllib.parse import parse_qsl

from vocabulary import DIRECTION, STATUS

ACTIONS: Final = ("create_call", "update_call")

# Published copies of the contract spell some names with Cyrillic letters that
# look like Latin ones; PBXs built from them send exactly that.
_LOOKALIKES = str.maketrans("асеорху", "aceopxy")  # noqa: RUF001
_NAME = re.compile(r"([^\[\]]+)(?:\[([^\[\]]*)\])?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Array items come as fields of their own in a urlencoded form, hence a roomy limit.
MAX_URLENCODED_FIELDS = 1000
# Trimmed around values, and all a value may be made of to count as not given.
_SPACE = " \t\r\n"


class FormError(Exception):
    """Fields of a parsable body have the wrong type (HTTP 422)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("invalid fields: " + ", ".join(sorted(fields)))
        self.fields = fields


class UnparsableBody(Exception):
    """The body is not a form or a JSON object (HTTP 400)."""


class UnsupportedCharset(Exception):
    """The body declares a charset this gateway does not know (HTTP 415)."""


class TooManyFields(Exception):
    """The body has more fields than allowed (HTTP 413)."""


def fold(text: str) -> str:
    """The spelling names and enumerated values are compared in."""
    return text.strip(_SPACE).lower().translate(_LOOKALIKES)


def field_name(raw: str) -> tuple[str, str | None] | None:
    """`user_ids[0]` -> ("user_ids", "0"); `phone` -> ("phone", None); junk -> None."""
    match = _NAME.fullmatch(raw.strip(_SPACE))
    if match is None:
        return None
    return fold(match.group(1)), match.group(2)


class RawForm:
    """Field values as they arrived, keyed by folded name, in arrival order."""

    def __init__(self) -> None:
        self._values: dict[str, list[tuple[str | None, object]]] = {}
        self._arrays: set[str] = set()

    def add(self, name: str, value: object) -> None:
        parsed = field_name(name)
        if parsed is None:
            return
        base, index = parsed
        entries = self._values.setdefault(base, [])
        items = value if isinstance(value, list) else [value]
        if index is not None or isinstance(value, list):
            self._arrays.add(base)
        key = (index or "").strip() or None
        for item in items:
            if key is not None:
                # `x[0]=a&x[0]=b` keeps the last, as PHP does.
                entries[:] = [(k, v) for k, v in entries if k != key]
            entries.append((key, item))

    def values(self, name: str) -> list[object]:
        """Present values of a field: nulls and blank strings count as not given."""
        return [v for _, v in self._values.get(name, ()) if not _blank(v)]

    def is_array(self, name: str) -> bool:
        """Whether the field came as an array (`x[]`, `x[0]`, a JSON array)."""
        return name in self._arrays


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip(_SPACE))


@dataclass(frozen=True)
class CreateCall:
    direction: str | None = None
    phone: str | None = None
    call_status: str | None = None
    pbx_call_id: str | None = None
    pbx_user_ids: tuple[str, ...] = ()
    user_ids: tuple[int, ...] = ()
    group_ids: tuple[int, ...] = ()
    comment: str | None = None


@dataclass(frozen=True)
class UpdateCall:
    call_id: int | None = None
    pbx_call_id: str | None = None
    call_status: str | None = None
    user_id: int | None = None
    pbx_user_id: str | None = None
    comment: str | None = None


def parse_call(form: RawForm) -> CreateCall | UpdateCall:
    """Typed fields of the action the form names; raises FormError listing every bad field."""
    fields = _Fields(form)
    action = fields.choice("action", ACTIONS)
    if action is None and "action" not in fields.errors:
        fields.errors["action"] = "is required: create_call or update_call"
    result: CreateCall | UpdateCall
    if action == "update_call":
        result = UpdateCall(
            call_id=fields.integer("call_id"),
            pbx_call_id=fields.text("pbx_call_id"),
            call_status=fields.choice("call_status", STATUS.names),
            user_id=fields.integer("user_id"),
            pbx_user_id=fields.text("pbx_user_id"),
            comment=fields.text("comment", strip=False),
        )
    else:
        result = CreateCall(
            direction=fields.choice("direction", DIRECTION.names),
            phone=fields.text("phone"),
            call_status=fields.choice("call_status", STATUS.names),
            pbx_call_id=fields.text("pbx_call_id"),
            pbx_user_ids=fields.texts("pbx_user_ids"),
            user_ids=fields.integers("user_ids"),
            group_ids=fields.integers("group_ids"),
            comment=fields.text("comment", strip=False),
        )
    if fields.errors:
        raise FormError(fields.errors)
    return result


class _Fields:
    """Reads typed values from a RawForm, collecting every error."""

    def __init__(self, form: RawForm) -> None:
        self.form = form
        self.errors: dict[str, str] = {}

    def _single(self, name: str) -> object:
        values = self.form.values(name)
        if self.form.is_array(name):
            self.errors[name] = "must be a single value, not an array"
            return None
        if len(values) > 1:
            self.errors[name] = "must be given once"
            return None
        return values[0] if values else None

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self._single(name)
        if value is None:
            return None
        if isinstance(value, str) and fold(value) in options:
            return fold(value)
        self.errors[name] = "must be one of: " + ", ".join(options)
        return None

    def text(self, name: str, *, strip: bool = True) -> str | None:
        value = self._single(name)
        if value is None:
            return None
        result = _as_text(value, strip=strip)
        if result is None:
            self.errors[name] = "must be a string or a number"
        elif not _is_unicode(result):
            self.errors[name] = _NOT_UNICODE
            return None
        return result

    def integer(self, name: str) -> int | None:
        value = self._single(name)
        if value is None:
            return None
        result = _as_integer(value)
        if result is None:
            self.errors[name] = "must be an integer"
        return result

    def texts(self, name: str) -> tuple[str, ...]:
        results = [_as_text(v, strip=True) for v in self.form.values(name)]
        if any(r is None for r in results):
            self.errors[name] = "must be a list of strings or numbers"
            return ()
        if not all(_is_unicode(r) for r in results if r is not None):
            self.errors[name] = _NOT_UNICODE
            return ()
        return tuple(r for r in results if r is not None)

    def integers(self, name: str) -> tuple[int, ...]:
        results = [_as_integer(v) for v in self.form.values(name)]
        if any(r is None for r in results):
            self.errors[name] = "must be a list of integers"
            return ()
        return tuple(r for r in results if r is not None)


_NOT_UNICODE = "must be Unicode text: it has an unpaired surrogate"


def _is_unicode(text: str) -> bool:
    """Whether the text can travel to core at all: gRPC strings are UTF-8, and a JSON
    escape such as "\\ud800" decodes to a lone surrogate that has no UTF-8 form. What
    text core accepts (no NUL, say) is core's rule, not this module's."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _as_text(value: object, *, strip: bool) -> str | None:
    if isinstance(value, str):
        return value.strip(_SPACE) if strip else value
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def _as_integer(value: object) -> int | None:
    number: int
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER.fullmatch(value.strip(_SPACE)):
        number = int(value.strip(_SPACE))
    else:
        return None
    return number if _INT64_MIN <= number <= _INT64_MAX else None


def check_charset(charset: str | None) -> str:
    name = charset or "utf-8"
    try:
        # A round trip also refuses codecs that are not text encodings (base64, zlib...).
        "a".encode(name).decode(name)
    except (LookupError, ValueError, UnicodeError):
        raise UnsupportedCharset(f"unknown charset {name!r}") from None
    return name


def from_urlencoded(body: bytes, charset: str | None = None) -> RawForm:
    """A RawForm from an application/x-www-form-urlencoded body."""
    encoding = check_charset(charset)
    if body.count(b"&") >= MAX_URLENCODED_FIELDS:
        raise TooManyFields(f"the form has more than {MAX_URLENCODED_FIELDS} fields")
    try:
        text = body.decode(encoding)
    except UnicodeError as err:
        raise UnparsableBody(f"not a valid {encoding} form: {err}") from None
    if _is_json_object(text):
        # What `curl -d '{...}'` sends: read as a form it has no fields at all.
        raise UnparsableBody(
            "the body is a JSON object sent as a form: send it with Content-Type: application/json"
        )
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding=encoding,
            errors="strict",
            max_num_fields=MAX_URLENCODED_FIELDS,
        )
    except (UnicodeError, ValueError) as err:
        raise UnparsableBody(f"not a valid {encoding} form: {err}") from None
    form = RawForm()
    for name, value in pairs:
        form.add(name, value)
    return form


def _is_json_object(text: str) -> bool:
    if not text.lstrip(_SPACE).startswith("{"):
        return False
    try:
        return isinstance(json.loads(text, parse_constant=_reject_constant), dict)
    except (ValueError, RecursionError):
        return False


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def from_json(body: bytes, charset: str | None = None, max_fields: int | None = None) -> RawForm:
    """A RawForm from a JSON object body; arrays stay arrays."""
    encoding = check_charset(charset)
    try:
        data = json.loads(body.decode(encoding), parse_constant=_reject_constant)
    except (UnicodeError, ValueError, RecursionError) as err:
        raise UnparsableBody(f"not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise UnparsableBody("the JSON body must be an object")
    if max_fields is not None and len(data) > max_fields:
        raise TooManyFields(f"the JSON object has more than {max_fields} members")
    form = RawForm()
    for name, value in data.items():
        form.add(name, value)
    return form
