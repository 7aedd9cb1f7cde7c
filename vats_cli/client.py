"""The CLI's only link to core: one gRPC channel, the bearer token, a deadline on every
request, and failures turned into one readable line."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from telephony.v1 import (
    call_service_pb2,
    call_service_pb2_grpc,
    channel_service_pb2,
    channel_service_pb2_grpc,
    directory_service_pb2,
    directory_service_pb2_grpc,
)


class CoreError(Exception):
    """A request core refused or could not answer, described in one line; `fields`
    are the request fields core named as wrong, with why."""

    def __init__(self, message: str, fields: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields: Mapping[str, str] = dict(fields or {})


class CoreClient:
    """Typed access to the telephony.v1 services of one core."""

    def __init__(self, target: str, token: str | None, timeout: float) -> None:
        self.target = target
        self._token = token
        self._timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._channel = grpc.insecure_channel(target)
        self._channels = channel_service_pb2_grpc.ChannelServiceStub(self._channel)
        self._directory = directory_service_pb2_grpc.DirectoryServiceStub(self._channel)
        self._calls = call_service_pb2_grpc.CallServiceStub(self._channel)

    def __enter__(self) -> CoreClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    # ChannelService

    def create_channel(
        self, request: channel_service_pb2.CreateChannelRequest
    ) -> channel_service_pb2.CreateChannelResponse:
        return self._unary(self._channels.CreateChannel, request)

    def get_channel(
        self, request: channel_service_pb2.GetChannelRequest
    ) -> channel_service_pb2.GetChannelResponse:
        return self._unary(self._channels.GetChannel, request)

    def list_channels(
        self, request: channel_service_pb2.ListChannelsRequest
    ) -> channel_service_pb2.ListChannelsResponse:
        return self._unary(self._channels.ListChannels, request)

    def update_channel(
        self, request: channel_service_pb2.UpdateChannelRequest
    ) -> channel_service_pb2.UpdateChannelResponse:
        return self._unary(self._channels.UpdateChannel, request)

    def rotate_channel_key(
        self, request: channel_service_pb2.RotateChannelKeyRequest
    ) -> channel_service_pb2.RotateChannelKeyResponse:
        return self._unary(self._channels.RotateChannelKey, request)

    def map_pbx_user(
        self, request: channel_service_pb2.MapPbxUserRequest
    ) -> channel_service_pb2.MapPbxUserResponse:
        return self._unary(self._channels.MapPbxUser, request)

    def unmap_pbx_user(
        self, request: channel_service_pb2.UnmapPbxUserRequest
    ) -> channel_service_pb2.UnmapPbxUserResponse:
        return self._unary(self._channels.UnmapPbxUser, request)

    # DirectoryService

    def upsert_department(
        self, request: directory_service_pb2.UpsertDepartmentRequest
    ) -> directory_service_pb2.UpsertDepartmentResponse:
        return self._unary(self._directory.UpsertDepartment, request)

    def list_departments(
        self, request: directory_service_pb2.ListDepartmentsRequest
    ) -> directory_service_pb2.ListDepartmentsResponse:
        return self._unary(self._directory.ListDepartments, request)

    def upsert_employee(
        self, request: directory_service_pb2.UpsertEmployeeRequest
    ) -> directory_service_pb2.UpsertEmployeeResponse:
        return self._unary(self._directory.UpsertEmployee, request)

    def list_employees(
        self, request: directory_service_pb2.ListEmployeesRequest
    ) -> directory_service_pb2.ListEmployeesResponse:
        return self._unary(self._directory.ListEmployees, request)

    def upsert_group(
        self, request: directory_service_pb2.UpsertGroupRequest
    ) -> directory_service_pb2.UpsertGroupResponse:
        return self._unary(self._directory.UpsertGroup, request)

    def list_groups(
        self, request: directory_service_pb2.ListGroupsRequest
    ) -> directory_service_pb2.ListGroupsResponse:
        return self._unary(self._directory.ListGroups, request)

    def upsert_contact(
        self, request: directory_service_pb2.UpsertContactRequest
    ) -> directory_service_pb2.UpsertContactResponse:
        return self._unary(self._directory.UpsertContact, request)

    def list_contacts(
        self, request: directory_service_pb2.ListContactsRequest
    ) -> directory_service_pb2.ListContactsResponse:
        return self._unary(self._directory.ListContacts, request)

    def remove_contact(
        self, request: directory_service_pb2.RemoveContactRequest
    ) -> directory_service_pb2.RemoveContactResponse:
        return self._unary(self._directory.RemoveContact, request)

    def issue_token(
        self, request: directory_service_pb2.IssueTokenRequest
    ) -> directory_service_pb2.IssueTokenResponse:
        return self._unary(self._directory.IssueToken, request)

    def list_tokens(
        self, request: directory_service_pb2.ListTokensRequest
    ) -> directory_service_pb2.ListTokensResponse:
        return self._unary(self._directory.ListTokens, request)

    def revoke_token(
        self, request: directory_service_pb2.RevokeTokenRequest
    ) -> directory_service_pb2.RevokeTokenResponse:
        return self._unary(self._directory.RevokeToken, request)

    # CallService

    def get_call(
        self, request: call_service_pb2.GetCallRequest
    ) -> call_service_pb2.GetCallResponse:
        return self._unary(self._calls.GetCall, request)

    def list_calls(
        self, request: call_service_pb2.ListCallsRequest
    ) -> call_service_pb2.ListCallsResponse:
        return self._unary(self._calls.ListCalls, request)

    def watch_call_cards(
        self, request: call_service_pb2.WatchCallCardsRequest
    ) -> Generator[call_service_pb2.CallCardEvent, None, None]:
        """Follows the card stream until it ends or the caller stops iterating.

        The stream has no deadline, since it is meant to run until the user stops
        it; an unreachable core still fails at once, as the call does not wait for
        the channel to become ready.
        """
        stream = self._calls.WatchCallCards(request, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            stream.cancel()

    def _unary(self, rpc: Callable[..., Any], request: Any) -> Any:
        try:
            return rpc(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def _error(self, error: Any) -> CoreError:
        reason, fields = _rich_details(error)
        code = error.code()
        if reason is None and code == grpc.StatusCode.UNAVAILABLE:
            return CoreError(f"cannot reach core at {self.target}")
        if reason is None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CoreError(f"core at {self.target} did not answer within {self._timeout:g} s")
        words = (reason or code.name.lower()).replace("_", " ")
        message = " ".join(str(error.details() or "").split())
        if fields:
            # The violations say more than a summary message naming the same fields.
            text = f"{words}: " + "; ".join(f"{name}: {why}" for name, why in fields)
        elif not message:
            text = words
        elif words in message.lower():
            text = message
        else:
            text = f"{words}: {message}"
        if code == grpc.StatusCode.UNAUTHENTICATED and not self._token:
            text += " (pass --token or set VATS_ADMIN_TOKEN)"
        return CoreError(text, dict(fields))


def _rich_details(error: Any) -> tuple[str | None, list[tuple[str, str]]]:
    """The ErrorInfo reason and BadRequest field violations core attaches to a status."""
    try:
        status = rpc_status.from_call(error)
    except ValueError:
        status = None
    reason: str | None = None
    fields: list[tuple[str, str]] = []
    if status is None:
        return reason, fields
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason or None
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            fields.extend((v.field, v.description) for v in bad_request.field_violations)
    return reason, fields
