"""Signed download links: valid until they expire, and only for the recording they were made for."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from core.recordings.signing import LinkSigner, signed_path

SECRET = b"0123456789abcdef-test-secret"
NOW = 1_760_000_000.5


@pytest.fixture
def signer() -> LinkSigner:
    return LinkSigner(SECRET, ttl_seconds=3600)


def test_link_is_valid_until_it_expires(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW)

    assert expires == int(NOW) + 3600
    assert signer.verify("rec1", expires, signature, NOW)
    assert signer.verify("rec1", expires, signature, expires - 1)


@pytest.mark.parametrize("later", [0, 1, 86_400])
def test_expired_link_is_refused(signer: LinkSigner, later: int) -> None:
    expires, signature = signer.sign("rec1", NOW)

    assert not signer.verify("rec1", expires, signature, expires + later)


def test_link_for_one_recording_does_not_open_another(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW)

    assert not signer.verify("rec2", expires, signature, NOW)
    assert not signer.verify("rec", expires, signature, NOW)


def test_link_with_a_changed_expiry_is_refused(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW)

    assert not signer.verify("rec1", expires + 1, signature, NOW)
    assert not signer.verify("rec1", expires + 86_400, signature, NOW)


def test_id_and_expiry_cannot_trade_digits() -> None:
    signer = LinkSigner(SECRET, ttl_seconds=10)
    expires, signature = signer.sign("rec1", 100)
    assert (expires, signer.verify("rec1", 110, signature, 0)) == (110, True)

    # "rec1" + "110" and "rec11" + "10" run together into the same text.
    assert not signer.verify("rec11", 10, signature, 0)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
        lambda s: s[:-1],
        lambda s: s + "A",
        lambda s: s + "=",
        lambda s: "",
        lambda s: "ж" * len(s),
    ],
)
def test_tampered_signature_is_refused(signer: LinkSigner, tamper: Callable[[str], str]) -> None:
    expires, signature = signer.sign("rec1", NOW)

    assert not signer.verify("rec1", expires, tamper(signature), NOW)


def test_link_signed_with_another_secret_is_refused(signer: LinkSigner) -> None:
    expires, signature = LinkSigner(b"another-secret-of-16+bytes", 3600).sign("rec1", NOW)

    assert not signer.verify("rec1", expires, signature, NOW)


def test_signature_is_url_safe_base64_without_padding(signer: LinkSigner) -> None:
    _, signature = signer.sign("rec1", NOW)

    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", signature)


def test_signed_path_carries_what_verify_needs(signer: LinkSigner) -> None:
    path, expires = signer.signed_path("rec1", NOW)

    parts = urlsplit(path)
    query = parse_qs(parts.query)
    assert parts.path == "/api/v2/telephony/records/rec1"
    assert query["expires"] == [str(expires)]
    assert signer.verify("rec1", int(query["expires"][0]), query["signature"][0], NOW)


def test_signed_path_quotes_the_id() -> None:
    path = signed_path("a/b c", 42, "sig")

    assert path == "/api/v2/telephony/records/a%2Fb%20c?expires=42&signature=sig"
    assert unquote(urlsplit(path).path.rsplit("/", 1)[1]) == "a/b c"


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        LinkSigner(b"short", 3600)


def test_lifetime_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LinkSigner(SECRET, 0)


# --- links bound to the token they were handed to ------------------------------------------------


def test_a_bound_link_verifies_for_its_token_only(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW, "tok_anna")

    assert signer.verify("rec1", expires, signature, NOW, "tok_anna")
    for other in ("tok_boris", "tok_ann", "tok_annaa", ""):
        assert not signer.verify("rec1", expires, signature, NOW, other)


def test_a_link_bound_to_no_token_does_not_verify_for_one(signer: LinkSigner) -> None:
    # Links made before links were bound stay valid, as links of no token.
    expires, signature = signer.sign("rec1", NOW)

    assert signer.verify("rec1", expires, signature, NOW)
    assert not signer.verify("rec1", expires, signature, NOW, "tok_anna")


def test_the_token_cannot_trade_digits_with_the_expiry(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW, "1tok")

    # The expiry and "1tok" run together into the same text as the expiry + "1" and "tok".
    assert not signer.verify("rec1", int(f"{expires}1"), signature, NOW, "tok")


def test_a_bound_link_expires_like_any_other(signer: LinkSigner) -> None:
    expires, signature = signer.sign("rec1", NOW, "tok_anna")

    assert not signer.verify("rec1", expires, signature, expires, "tok_anna")


def test_a_bound_signed_path_names_its_token(signer: LinkSigner) -> None:
    path, expires = signer.signed_path("rec1", NOW, "tok_anna")

    query = parse_qs(urlsplit(path).query)
    assert list(query) == ["expires", "token", "signature"]
    assert query["token"] == ["tok_anna"]
    assert signer.verify("rec1", expires, query["signature"][0], NOW, "tok_anna")
