"""The telephony.v1 gRPC transport: servicers that convert messages, delegate to the use
cases and convert the result.

handler (authentication, the storage runner, deadlines), status (domain errors to gRPC
statuses), decode (messages to commands and queries), encode (records to messages), and
one servicer module per service: calls, channels, directory.
"""

from core.rpc.calls import CallServicer
from core.rpc.channels import ChannelServicer
from core.rpc.directory import DirectoryServicer
from core.rpc.handler import Handler, StorageRunner

__all__ = ["CallServicer", "ChannelServicer", "DirectoryServicer", "Handler", "StorageRunner"]
