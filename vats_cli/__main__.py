"""Runs the admin CLI as `python -m vats_cli`."""

from vats_cli.main import main

raise SystemExit(main())
