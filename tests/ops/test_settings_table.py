"""The README's configuration table documents exactly the variables of the settings table,
with the same defaults, and core's settings read every variable they hold."""

from __future__ import annotations

import dataclasses
import re

from core.config import CoreConfig
from tests.conftest import ROOT
from vats_settings import defined
from vats_settings import table as t


def readme_defaults() -> dict[str, str | None]:
    """Each variable of the README's table with its default as the table writes it in the
    environment (`{VATS_X}` for another variable's value), None when it is unset."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    found: dict[str, str | None] = {}
    for line in table.splitlines():
        if not line.startswith("| `VATS_"):
            continue
        names_cell, default_cell = line.split("|")[1:3]
        names = re.findall(r"VATS_[A-Z_]+", names_cell)
        defaults = default_cell.split(" / ") if len(names) > 1 else [default_cell]
        assert len(defaults) == len(names), line
        for name, default in zip(names, defaults, strict=True):
            assert name not in found, f"{name} is in the README's table twice"
            found[name] = _written(default.strip())
    return found


def _written(cell: str) -> str | None:
    quoted = re.match(r"`([^`]*)`", cell)
    if quoted is None:
        return None
    value = quoted[1]
    return "{" + value + "}" if re.fullmatch(r"VATS_[A-Z_]+", value) else value


def test_the_readme_table_has_every_variable_with_its_default() -> None:
    documented = readme_defaults()
    defined_here = {s.name: s.default for s in defined() if not s.test_only}
    assert documented == defined_here


def test_test_hooks_stay_out_of_the_readme() -> None:
    hooks = {s.name for s in defined() if s.test_only}
    assert hooks == {"VATS_TEST_STORAGE_DELAY_MS"}
    assert hooks.isdisjoint(readme_defaults())


def test_core_settings_read_a_variable_for_every_field() -> None:
    env = {
        "VATS_GRPC_ADDR": "0.0.0.0:7000",
        "VATS_HTTP_ADDR": "0.0.0.0:7001",
        "VATS_MONGODB_URI": "mongodb://db.example:27017/?replicaSet=rs0",
        "VATS_MONGODB_DB": "other",
        "VATS_SEED": "seed.json",
        "VATS_DATA_DIR": "/srv/vats",
        "VATS_MAX_RECORD_MB": "7",
        "VATS_DEFAULT_REGION": "KZ",
        "VATS_TIMEZONE": "Asia/Almaty",
        "VATS_LINK_SECRET": "secret",
        "VATS_LINK_TTL_SECONDS": "60",
        "VATS_RINGING_EXPIRY_SECONDS": "61",
        "VATS_IN_PROGRESS_EXPIRY_SECONDS": "62",
        "VATS_SWEEP_INTERVAL_SECONDS": "0.5",
        "VATS_STORAGE_WORKERS": "3",
        "VATS_EVENT_SOURCE": "inprocess",
        "VATS_METRICS_ADDR": "0.0.0.0:9100",
        "VATS_STORAGE_CHECK_SECONDS": "2",
        "VATS_LOG_LEVEL": "debug",
        "VATS_TEST_STORAGE_DELAY_MS": "250",
    }
    config = CoreConfig.from_env(env)
    initial = CoreConfig.from_env({})
    unchanged = [
        field.name
        for field in dataclasses.fields(CoreConfig)
        if getattr(config, field.name) == getattr(initial, field.name)
    ]
    assert unchanged == []
    # Derived from VATS_HTTP_ADDR when VATS_PUBLIC_URL is unset.
    assert config.public_url == "http://0.0.0.0:7001"
    assert config.log_level == "DEBUG"
    assert config.test_storage_delay_ms == 250


def test_core_defaults_are_the_variables_defaults() -> None:
    assert CoreConfig.from_env({}) == dataclasses.replace(
        CoreConfig(), metrics_addr=t.METRICS_ADDR.initial
    )
