"""The seed file (SPEC 9): departments, employees, groups, channels, tokens and
contacts applied at start as upserts, safe to apply twice."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.app import UseCases, units
from core.auth import Role, secret_hash


def apply_seed(app: UseCases, seed: Mapping[str, Any]) -> None:
    for d in seed.get("departments", []):
        app.directory.upsert_department(int(d["id"]), str(d["name"]))
    for e in seed.get("employees", []):
        app.directory.upsert_employee(int(e["id"]), str(e["name"]), bool(e.get("telephony", False)))
    for g in seed.get("groups", []):
        app.directory.upsert_group(
            int(g["id"]), str(g["name"]), [int(m) for m in g.get("members", [])]
        )
    for c in seed.get("channels", []):
        _seed_channel(app, c)
    for t in seed.get("tokens", []):
        if not app.tokens.known(str(t["token"])):
            app.tokens.issue(
                Role(t["role"]),
                t.get("employee_id"),
                t.get("description", "seed"),
                secret=str(t["token"]),
            )
    for c in seed.get("contacts", []):
        app.directory.upsert_contact(str(c["phone"]), str(c["name"]))


def _seed_channel(app: UseCases, seed: Mapping[str, Any]) -> None:
    key = str(seed["key"])
    existing = units.read(
        app.channels.store, lambda uow: uow.channels.by_key_hash(secret_hash(key))
    )
    if existing is None:
        channel, _ = app.channels.create(
            str(seed["name"]),
            int(seed.get("department_id", 0)),
            key,
            channel_id=int(seed.get("id", 0)),
        )
    else:
        channel = app.channels.update(
            existing.channel_id,
            name=str(seed["name"]),
            department_id=int(seed.get("department_id", existing.department_id)),
        )
    for pbx_user_id, employee_id in seed.get("pbx_users", {}).items():
        app.channels.map_pbx_user(channel.channel_id, str(pbx_user_id), int(employee_id))
