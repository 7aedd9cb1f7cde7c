"""vats-bridge admin tools: the `vats` command-line client of core and the local launcher."""
