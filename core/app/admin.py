"""Channel and directory administration: channels with their keys and PBX-user
maps, departments, employees, groups and contacts (SPEC 2)."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime

from core import domain
from core.app import paging, units
from core.app.audit import Action, note, record
from core.auth import Principal, new_secret, secret_hash
from core.domain import Employee
from core.errors import ContactInUse, InvalidRequest, NotFound
from core.model import CallQuery, Channel, Contact, Department, Group, utc_now
from core.storage.port import Store, UnitOfWork

MIN_KEY_LENGTH = 8
MAX_CONTACT_NAME_LENGTH = 200


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
        self,
        name: str,
        department_id: int,
        key: str | None = None,
        channel_id: int = 0,
        *,
        actor: Principal | None = None,
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
            note(
                uow,
                actor,
                Action.CHANNEL_CREATED,
                channel.created_at,
                channel.channel_id,
                name=channel.name,
                department_id=department_id,
            )
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
        actor: Principal | None = None,
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
            note(
                uow,
                actor,
                Action.CHANNEL_UPDATED,
                self.clock(),
                channel_id,
                name=channel.name if name is not None else None,
                department_id=department_id,
                enabled=enabled,
            )
            return channel

        return units.write(self.store, work)

    def rotate_key(self, channel_id: int, *, actor: Principal | None = None) -> tuple[Channel, str]:
        """A new key; the old one stops working at once."""
        key = new_secret()

        def work(uow: UnitOfWork) -> Channel:
            channel = _channel(uow, channel_id)
            channel.key_hash = secret_hash(key)
            uow.channels.save(channel)
            note(uow, actor, Action.CHANNEL_KEY_ROTATED, self.clock(), channel_id)
            return channel

        return units.write(self.store, work), key

    def map_pbx_user(
        self,
        channel_id: int,
        pbx_user_id: str,
        employee_id: int,
        *,
        actor: Principal | None = None,
    ) -> Channel:
        pbx_user_id = _check_pbx_user_id(pbx_user_id)

        def work(uow: UnitOfWork) -> Channel:
            if not uow.employees.get_many([employee_id]):
                raise InvalidRequest.of({"employee_id": f"unknown employee {employee_id}"})
            channel = _channel(uow, channel_id)
            channel.pbx_users[pbx_user_id] = employee_id
            uow.channels.save(channel)
            note(
                uow,
                actor,
                Action.PBX_USER_MAPPED,
                self.clock(),
                channel_id,
                pbx_user_id=pbx_user_id,
                employee_id=employee_id,
            )
            return channel

        return units.write(self.store, work)

    def unmap_pbx_user(
        self, channel_id: int, pbx_user_id: str, *, actor: Principal | None = None
    ) -> Channel:
        pbx_user_id = _check_pbx_user_id(pbx_user_id)

        def work(uow: UnitOfWork) -> Channel:
            channel = _channel(uow, channel_id)
            employee_id = channel.pbx_users.pop(pbx_user_id, None)
            if employee_id is not None:
                uow.channels.save(channel)
            note(
                uow,
                actor,
                Action.PBX_USER_UNMAPPED,
                self.clock(),
                channel_id,
                pbx_user_id=pbx_user_id,
                employee_id=employee_id,
            )
            return channel

        return units.write(self.store, work)


def _channel(uow: UnitOfWork, channel_id: int) -> Channel:
    channel = uow.channels.get(channel_id)
    if channel is None:
        raise NotFound(f"channel {channel_id} not found")
    return channel


class DirectoryAdmin:
    def __init__(
        self, store: Store, region: str = "RU", clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.store = store
        # Phone numbers without a country code are read as this region's, as calls' are.
        self.region = region
        self.clock = clock

    def upsert_department(
        self, department_id: int, name: str, *, actor: Principal | None = None
    ) -> Department:
        _require_id_and_name(department_id, name, "department_id")
        department = Department(department_id, name.strip())

        def work(uow: UnitOfWork) -> None:
            uow.departments.save(department)
            note(
                uow,
                actor,
                Action.DEPARTMENT_UPSERTED,
                self.clock(),
                department_id,
                name=department.name,
            )

        units.write(self.store, work)
        return department

    def upsert_employee(
        self, employee_id: int, name: str, telephony: bool, *, actor: Principal | None = None
    ) -> Employee:
        _require_id_and_name(employee_id, name, "employee_id")
        employee = Employee(employee_id, name.strip(), telephony)

        def work(uow: UnitOfWork) -> None:
            uow.employees.save(employee)
            note(
                uow,
                actor,
                Action.EMPLOYEE_UPSERTED,
                self.clock(),
                employee_id,
                name=employee.name,
                telephony=telephony,
            )

        units.write(self.store, work)
        return employee

    def upsert_group(
        self, group_id: int, name: str, members: Iterable[int], *, actor: Principal | None = None
    ) -> Group:
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
            note(
                uow,
                actor,
                Action.GROUP_UPSERTED,
                self.clock(),
                group_id,
                name=group.name,
                members=group.members,
            )
            return group

        return units.write(self.store, work)

    def list_departments(self) -> list[Department]:
        return units.read(self.store, lambda uow: uow.departments.list())

    def list_employees(self) -> list[Employee]:
        return units.read(self.store, lambda uow: uow.employees.list())

    def list_groups(self) -> list[Group]:
        return units.read(self.store, lambda uow: uow.groups.list())

    def upsert_contact(self, phone: str, name: str, *, actor: Principal | None = None) -> Contact:
        """Name the contact of a phone number: the one its calls are linked to,
        found however the number is spelt, or a new one."""
        phone, name = phone.strip(), name.strip()
        _check_contact(phone, name)
        e164 = domain.normalize_phone(phone, self.region)
        key = domain.contact_key_of(phone, e164)

        def work(uow: UnitOfWork) -> Contact:
            contact = uow.contacts.by_key(key)
            if contact is None:
                contact = Contact(
                    contact_id=uow.contacts.next_id(),
                    key=key,
                    phone_e164=e164,
                    created_at=self.clock(),
                    name=name,
                )
                uow.contacts.add(contact)
            elif contact.name != name:
                contact.name = name
                uow.contacts.save(contact)
            note(uow, actor, Action.CONTACT_UPSERTED, self.clock(), contact.contact_id, name=name)
            return contact

        return units.write(self.store, work)

    def list_contacts(
        self, page_size: int, page_token: str, *, actor: Principal | None = None
    ) -> tuple[list[Contact], str]:
        """A page of contacts by id, named or not, and the token of the next page
        ("" after the last); with an `actor`, the read is audited before it is returned."""
        size = paging.size(page_size)
        after = paging.id_from_token(page_token) if page_token else 0
        contacts = units.read(self.store, lambda uow: uow.contacts.list(after, size + 1))
        record(self.store, actor, Action.CONTACTS_LISTED, self.clock(), count=len(contacts[:size]))
        return paging.cut(contacts, size, lambda last: paging.id_token(last.contact_id))

    def remove_contact(self, contact_id: int, *, actor: Principal | None = None) -> None:
        """Forget a contact no call is linked to; one with calls is refused
        (ContactInUse): their tickets show it, so it may only be renamed."""
        if contact_id <= 0:
            raise InvalidRequest.of({"contact_id": "must be a positive integer"})

        def work(uow: UnitOfWork) -> None:
            contact = uow.contacts.get(contact_id)
            if contact is None:
                raise NotFound(f"contact {contact_id} not found")
            # A call is linked to the contact whose key is its phone key.
            if uow.calls.page(CallQuery(phone_key=contact.key), None, 1):
                raise ContactInUse(
                    f"contact {contact_id} has calls linked to it and stays while they do; "
                    "upsert it with another name instead"
                )
            uow.contacts.remove(contact_id)
            note(uow, actor, Action.CONTACT_REMOVED, self.clock(), contact_id)

        units.write(self.store, work)


def _check_contact(phone: str, name: str) -> None:
    errors = {}
    if not phone:
        errors["phone"] = "required"
    elif len(phone) > domain.MAX_PHONE_LENGTH:
        errors["phone"] = f"longer than {domain.MAX_PHONE_LENGTH} characters"
    elif _has_control_characters(phone):
        errors["phone"] = "must not contain control characters"
    elif not any(ch.isdigit() for ch in phone):
        errors["phone"] = "must contain digits"
    if not name:
        errors["name"] = "required"
    elif len(name) > MAX_CONTACT_NAME_LENGTH:
        errors["name"] = f"longer than {MAX_CONTACT_NAME_LENGTH} characters"
    elif _has_control_characters(name):
        errors["name"] = "must not contain control characters"
    if errors:
        raise InvalidRequest.of(errors)


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _require_id_and_name(entity_id: int, name: str, id_field: str) -> None:
    errors = {}
    if entity_id <= 0:
        errors[id_field] = "must be a positive integer"
    if not name.strip():
        errors["name"] = "required"
    if errors:
        raise InvalidRequest.of(errors)
