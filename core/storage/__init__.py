"""Where core keeps its state: the storage port (`port`) and its adapters,
SQLite (`sqlite`, the embedded default) and MongoDB (`mongo`)."""
