"""Channel and directory administration: channels with their keys and PBX-user
maps, departments, employees and groups (SPEC 2)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from datetime import datetime

from core import domain
from core.app import units
from core.auth import new_secret, secret_hash
from core.domain import Employee
from core.errors import InvalidRequest, NotFound
from core.model import Channel, Department, Group, utc_now
from core.storage.port import Store, UnitOfWork

MIN_KEY_LENGTH = 8


@dataclasses.dataclass(frozen=True)
class ChannelRef:
    """A channel as a request names it: by its secret key (the PBX) or its id (services)."""

    key: str | None = None
    channel_id: int | None = None


def resolve_channel(uow: UnitOfWork, ref: ChannelRef) -> Channel:
    """The enabled channel a request names; NotFound without saying whether a key
    exists but is disabled."""
    if ref.key is not None:
        key = ref.key.removeprefix("@")
        channel = uow.channels.by_key_hash(secret_hash(key)) if key else None
    elif ref.channel_id is not None:
        channel = uow.channels.get(ref.channel_id)
    else:
        raise InvalidRequest.of({"channel": "channel_key or channel_id is required"})
    if channel is None or not channel.enabled:
        raise NotFound("unknown channel")
    return channel


def _check_pbx_user_id(pbx_user_id: str) -> str:
    pbx_user_id = pbx_user_id.strip()
    if not pbx_user_id or len(pbx_user_id) > domain.MAX_PBX_ID_LENGTH:
        raise InvalidRequest.of(
            {"pbx_user_id": f"a non-empty id of at most {domain.MAX_PBX_ID_LENGTH} characters"}
        )
    return pbx_user_id


class ChannelAdmin:
    def __init__(
        self, store: Store, public_url: str = "", clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store = store
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    def url(self, key: str) -> str:
        return f"{self.public_url}/api/v2/telephony/calls/{key}"

    def resolve(self, ref: ChannelRef) -> Channel:
        return units.read(self.store, lambda uow: resolve_channel(uow, ref))

    def create(
        self, name: str, department_id: int, key: str | None = None, channel_id: int = 0
    ) -> tuple[Channel, str]:
        """A new channel and its key (random unless given); `channel_id` keeps a seeded id."""
        errors = {}
        if not name.strip():
            errors["name"] = "required"
        if key is not None and len(key) < MIN_KEY_LENGTH:
            errors["key"] = f"at least {MIN_KEY_LENGTH} characters"
        key = key or new_secret()

        def work(uow: UnitOfWork) -> Channel:
            if department_id and uow.departments.get(department_id) is None:
                errors["department_id"] = f"unknown department {department_id}"
            if uow.channels.by_key_hash(secret_hash(key)) is not None:
                errors["key"] = "this key is already in use"
            if errors:
                raise InvalidRequest.of(errors)
            if channel_id:
                uow.channels.reserve_ids_through(channel_id - 1)
            channel = Channel(
                channel_id=uow.channels.next_id(),
                name=name.strip(),
                department_id=department_id,
                key_hash=secret_hash(key),
                created_at=self.clock(),
            )
            uow.channels.add(channel)
            return channel

        return units.write(self.store, work), key

    def get(self, channel_id: int) -> Channel:
        return units.read(self.store, lambda uow: _channel(uow, channel_id))

    def list(self) -> list[Channel]:
        return units.read(self.store, lambda uow: uow.channels.list())

    def update(
        self,
        channel_id: int,
        *,
        name: str | None = None,
        department_id: int | None = None,
        enabled: bool | None = None,
    ) -> Channel:
        if name is not None and not name.strip():
            raise InvalidRequest.of({"name": "must not be empty"})

        def work(uow: UnitOfWork) -> Channel:
            channel = _channel(uow, channel_id)
            if department_id is not None:
                if uow.departments.get(department_id) is None:
                    raise InvalidRequest.of(
                        {"department_id": f"unknown department {department_id}"}
                    )
                channel.department_id = department_id
            if name is not None:
                channel.name = name.strip()
            if enabled is not None:
                channel.enabled = enabled
            uow.channels.save(channel)
            return channel

        return units.write(self.store, work)

    def rotate_key(self, channel_id: int) -> tuple[Channel, str]:
        """A new key; the old one stops working at once."""
        key = new_secret()

        def work(uow: UnitOfWork) -> Channel:
            channel = _channel(uow, channel_id)
            channel.key_hash = secret_hash(key)
            uow.channels.save(channel)
            return channel

        return units.write(self.store, work), key

    def map_pbx_user(self, channel_id: int, pbx_user_id: str, employee_id: int) -> Channel:
        pbx_user_id = _check_pbx_user_id(pbx_user_id)

        def work(uow: UnitOfWork) -> Channel:
            if not uow.employees.get_many([employee_id]):
                raise InvalidRequest.of({"employee_id": f"unknown employee {employee_id}"})
            channel = _channel(uow, channel_id)
            channel.pbx_users[pbx_user_id] = employee_id
            uow.channels.save(channel)
            return channel

        return units.write(self.store, work)

    def unmap_pbx_user(self, channel_id: int, pbx_user_id: str) -> Channel:
        pbx_user_id = _check_pbx_user_id(pbx_user_id)

        def work(uow: UnitOfWork) -> Channel:
            channel = _channel(uow, channel_id)
            if channel.pbx_users.pop(pbx_user_id, None) is not None:
                uow.channels.save(channel)
            return channel

        return units.write(self.store, work)


def _channel(uow: UnitOfWork, channel_id: int) -> Channel:
    channel = uow.channels.get(channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} not found")
    return channel


class DirectoryAdmin:
    def __init__(self, store: Store) -> None:
        self.store = store

    def upsert_department(self, department_id: int, name: str) -> Department:
        _require_id_and_name(department_id, name, "department_id")
        department = Department(department_id, name.strip())
        units.write(self.store, lambda uow: uow.departments.save(department))
        return department

    def upsert_employee(self, employee_id: int, name: str, telephony: bool) -> Employee:
        _require_id_and_name(employee_id, name, "employee_id")
        employee = Employee(employee_id, name.strip(), telephony)
        units.write(self.store, lambda uow: uow.employees.save(employee))
        return employee

    def upsert_group(self, group_id: int, name: str, members: Iterable[int]) -> Group:
        _require_id_and_name(group_id, name, "group_id")
        group = Group(group_id, name.strip(), tuple(dict.fromkeys(members)))

        def work(uow: UnitOfWork) -> Group:
            known = uow.employees.get_many(group.members)
            unknown = [m for m in group.members if m not in known]
            if unknown:
                raise InvalidRequest.of(
                    {"members": "unknown employees: " + ", ".join(map(str, unknown))}
                )
            uow.groups.save(group)
            return group

        return units.write(self.store, work)

    def list_departments(self) -> list[Department]:
        return units.read(self.store, lambda uow: uow.departments.list())

    def list_employees(self) -> list[Employee]:
        return units.read(self.store, lambda uow: uow.employees.list())

    def list_groups(self) -> list[Group]:
        return units.read(self.store, lambda uow: uow.groups.list())


def _require_id_and_name(entity_id: int, name: str, id_field: str) -> None:
    errors = {}
    if entity_id <= 0:
        errors[id_field] = "must be a positive integer"
    if not name.strip():
        errors["name"] = "required"
    if errors:
        raise InvalidRequest.of(errors)
