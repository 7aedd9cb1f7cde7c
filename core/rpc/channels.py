"""ChannelService: the admin's channels, their keys and PBX user mappings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from core.model import Channel
from core.rpc import encode
from core.rpc.handler import ADMIN, Context, Handler
from telephony.v1 import channel_service_pb2 as pb
from telephony.v1 import channel_service_pb2_grpc

R = TypeVar("R")


class ChannelServicer(channel_service_pb2_grpc.ChannelServiceServicer):
    def __init__(self, handler: Handler) -> None:
        self.h = handler
        self.channels = handler.app.channels

    def _with_key(self, reply: Callable[..., R], keyed: tuple[Channel, str]) -> R:
        """A reply with a channel and its new key (shown this once), and the key's URL."""
        channel, key = keyed
        return reply(channel=encode.channel_message(channel), key=key, url=self.channels.url(key))

    async def CreateChannel(
        self, request: pb.CreateChannelRequest, context: Context
    ) -> pb.CreateChannelResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.channels.create(
                request.name, request.department_id, request.key or None, actor=principal
            ),
            lambda keyed: self._with_key(pb.CreateChannelResponse, keyed),
        )

    async def GetChannel(
        self, request: pb.GetChannelRequest, context: Context
    ) -> pb.GetChannelResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.channels.get(request.channel_id),
            lambda channel: pb.GetChannelResponse(channel=encode.channel_message(channel)),
        )

    async def ListChannels(
        self, request: pb.ListChannelsRequest, context: Context
    ) -> pb.ListChannelsResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda _: self.channels.list(),
            lambda found: pb.ListChannelsResponse(
                channels=[encode.channel_message(c) for c in found]
            ),
        )

    async def UpdateChannel(
        self, request: pb.UpdateChannelRequest, context: Context
    ) -> pb.UpdateChannelResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.channels.update(
                request.channel_id,
                actor=principal,
                name=request.name if request.HasField("name") else None,
                department_id=(
                    request.department_id if request.HasField("department_id") else None
                ),
                enabled=request.enabled if request.HasField("enabled") else None,
            ),
            lambda channel: pb.UpdateChannelResponse(channel=encode.channel_message(channel)),
        )

    async def RotateChannelKey(
        self, request: pb.RotateChannelKeyRequest, context: Context
    ) -> pb.RotateChannelKeyResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.channels.rotate_key(request.channel_id, actor=principal),
            lambda keyed: self._with_key(pb.RotateChannelKeyResponse, keyed),
        )

    async def MapPbxUser(
        self, request: pb.MapPbxUserRequest, context: Context
    ) -> pb.MapPbxUserResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.channels.map_pbx_user(
                request.channel_id, request.pbx_user_id, request.employee_id, actor=principal
            ),
            lambda channel: pb.MapPbxUserResponse(channel=encode.channel_message(channel)),
        )

    async def UnmapPbxUser(
        self, request: pb.UnmapPbxUserRequest, context: Context
    ) -> pb.UnmapPbxUserResponse:
        return await self.h.unary(
            context,
            ADMIN,
            lambda principal: self.channels.unmap_pbx_user(
                request.channel_id, request.pbx_user_id, actor=principal
            ),
            lambda channel: pb.UnmapPbxUserResponse(channel=encode.channel_message(channel)),
        )
