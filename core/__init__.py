"""vats-bridge core: the telephony.v1 gRPC server that holds every rule and all state."""
