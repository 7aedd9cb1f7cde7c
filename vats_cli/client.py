"""The CLI's only link to core: one gRPC channel, the bearer token, a deadline on every
request, and failures turned into one readable line."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any

import grpc

import vats_rpc
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
        self._metadata = vats_rpc.token_metadata(token)
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

    def list_audit_entries(
        self, request: directory_service_pb2.ListAuditEntriesRequest
    ) -> directory_service_pb2.ListAuditEntriesResponse:
        return self._unary(self._directory.ListAuditEntries, request)

    def export_audit_entries(
        self, request: directory_service_pb2.ExportAuditEntriesRequest
    ) -> Generator[directory_service_pb2.ExportAuditEntriesResponse, None, None]:
        return self._stream(self._directory.ExportAuditEntries, request)

    # CallService

    def get_call(
        self, request: call_service_pb2.GetCallRequest
    ) -> call_service_pb2.GetCallResponse:
        return self._unary(self._calls.GetCall, request)

    def list_calls(
        self, request: call_service_pb2.ListCallsRequest
    ) -> call_service_pb2.ListCallsResponse:
        return self._unary(self._calls.ListCalls, request)

    def list_callbacks(
        self, request: call_service_pb2.ListCallbacksRequest
    ) -> call_service_pb2.ListCallbacksResponse:
        return self._unary(self._calls.ListCallbacks, request)

    def mark_called_back(
        self, request: call_service_pb2.MarkCalledBackRequest
    ) -> call_service_pb2.MarkCalledBackResponse:
        return self._unary(self._calls.MarkCalledBack, request)

    def get_board(
        self, request: call_service_pb2.GetBoardRequest
    ) -> call_service_pb2.GetBoardResponse:
        return self._unary(self._calls.GetBoard, request)

    def watch_call_cards(
        self, request: call_service_pb2.WatchCallCardsRequest
    ) -> Generator[call_service_pb2.CallCardEvent, None, None]:
        return self._stream(self._calls.WatchCallCards, request)

    def _unary(self, rpc: Callable[..., Any], request: Any) -> Any:
        """A request with the token and the deadline; a refusal raises CoreError."""
        try:
            return rpc(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from None

    def _stream(self, rpc: Callable[..., Any], request: Any) -> Generator[Any, None, None]:
        """Follows a server stream until it ends or the caller stops iterating.

        The stream has no deadline, since it is meant to run until the user stops
        it; an unreachable core still fails at once, as the call does not wait for
        the channel to become ready.
        """
        stream = rpc(request, metadata=self._metadata)
        try:
            yield from stream
        except grpc.RpcError as error:
            raise self._error(error) from None
        finally:
            stream.cancel()

    def _error(self, error: grpc.RpcError) -> CoreError:
        status = vats_rpc.RpcStatus.of(error)
        if not status.reason and status.code == grpc.StatusCode.UNAVAILABLE:
            return CoreError(f"cannot reach core at {self.target}")
        if not status.reason and status.code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return CoreError(f"core at {self.target} did not answer within {self._timeout:g} s")
        text = _one_line(status)
        if status.code == grpc.StatusCode.UNAUTHENTICATED and not self._token:
            text += " (pass --token or set VATS_ADMIN_TOKEN)"
        return CoreError(text, dict(status.violations))


def _one_line(status: vats_rpc.RpcStatus) -> str:
    """What core said: its reason (else the code), then the wrong fields or its message."""
    words = (status.reason or status.code.name.lower()).replace("_", " ")
    message = " ".join(status.message.split())
    if status.violations:
        # The violations say more than a summary message naming the same fields.
        return f"{words}: " + "; ".join(f"{name}: {why}" for name, why in status.violations)
    if not message:
        return words
    if words in message.lower():
        return message
    return f"{words}: {message}"
