"""The HTTP gateway: the PBX endpoint, recordings, call-card streams; a thin client of core."""
