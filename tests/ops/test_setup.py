"""Setting up: `make run` installs what runs the service and nothing else, every other target
adds its own tools on top, and installing prints no warnings."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
RUNTIME_PACKAGES = (
    "core",
    "gateway",
    "vats_cli",
    "vats_lifetime",
    "vats_logs",
    "vats_rpc",
    "vats_settings",
    "vocabulary",
)
OWN_MODULES = {*RUNTIME_PACKAGES, "telephony"}
# The development tools a new user running `make run` should never wait for.
TOOLS = {"pytest", "httpx", "mongomock", "ruff", "mypy", "playwright", "schemathesis", "py-spy"}

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def test_runtime_dependencies_hold_no_tool_and_no_proto_compiler() -> None:
    runtime = names(PROJECT["dependencies"])

    assert not runtime & TOOLS
    assert "grpcio-tools" not in runtime
    for extra, requirements in EXTRAS.items():
        assert not runtime & names(requirements), f"extra {extra!r} repeats a runtime dependency"


def test_each_target_has_its_extra_and_dev_has_them_all() -> None:
    assert "grpcio-tools" in names(EXTRAS["build"])
    assert {"pytest", "httpx", "mongomock", "schemathesis"} <= names(EXTRAS["test"])
    assert "playwright" in names(EXTRAS["browser"])
    assert {"ruff", "mypy"} <= names(EXTRAS["lint"])
    assert "py-spy" in names(EXTRAS["bench"])
    (dev,) = (Requirement(r) for r in EXTRAS["dev"])
    assert canonicalize_name(dev.name) == canonicalize_name(PROJECT["name"])
    assert dev.extras == set(EXTRAS) - {"dev"}


def test_the_proto_compiler_is_pinned_to_the_grpc_runtime() -> None:
    """The generated code must match the grpcio that loads it."""
    pins = {Requirement(r).name: Requirement(r).specifier for r in PROJECT["dependencies"]}
    (tools,) = (Requirement(r) for r in EXTRAS["build"] if r.startswith("grpcio-tools"))
    assert str(tools.specifier) == str(pins["grpcio"])


def _runtime_closure() -> set[str]:
    """Every distribution that installing the runtime dependencies brings in."""
    seen: set[str] = set()
    todo = [Requirement(r) for r in PROJECT["dependencies"]]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(requirement.name) or []:
            dependency = Requirement(line)
            wanted = {"", *requirement.extras}
            marker = dependency.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted):
                todo.append(dependency)
    return seen


def _imported_modules(package: str) -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_the_service_imports_only_what_the_runtime_dependencies_install() -> None:
    installed = _runtime_closure()
    providers = metadata.packages_distributions()
    imported = set().union(*(_imported_modules(p) for p in RUNTIME_PACKAGES))
    third_party = imported - set(sys.stdlib_module_names) - OWN_MODULES - {"__future__"}

    missing = {
        module
        for module in third_party
        if not {canonicalize_name(d) for d in providers.get(module, [])} & installed
    }
    assert third_party and not missing


def _make(*args: str) -> list[str]:
    # Not the flags and variables of a `make test` this suite may be running under.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.splitlines()


def _installed_extras(recipe: list[str]) -> list[set[str]]:
    """The extras of each `pip install` of the project in a dry run's recipe lines."""
    installs = []
    for line in recipe:
        if re.search(r"-m pip .*install .*-e ", line):
            found = re.search(r"-e '?\.(?:\[([^\]]*)\])?", line)
            assert found, line
            installs.append(set(filter(None, (found.group(1) or "").split(","))))
    return installs


@needs_make
def test_make_run_on_a_fresh_machine_installs_the_runtime_and_the_proto_compiler_only(
    tmp_path: Path,
) -> None:
    recipe = _make("-n", "run", f"VENV={tmp_path / 'venv'}")

    assert any(line.endswith(f"-m venv {tmp_path / 'venv'}") for line in recipe)
    assert _installed_extras(recipe) == [{"build"}]
    assert not any("editable_mode=compat" in line for line in recipe)


@needs_make
@pytest.mark.parametrize(
    ("target", "extras"),
    [("test", {"test", "browser"}), ("lint", {"lint"}), ("bench", {"bench"})],
)
def test_a_venv_made_by_make_run_gets_each_targets_tools(
    tmp_path: Path, target: str, extras: set[str]
) -> None:
    venv = f"VENV={tmp_path / 'venv'}"
    fresh = _make("-n", target, venv)
    assert _installed_extras(fresh) == [{"build"}, {"build", *extras}]

    # What `make run` leaves behind: its stamp, as make records it.
    (tmp_path / "venv").mkdir()
    (stamp,) = {m for line in fresh for m in re.findall(r"touch (\S+\.installed-\d+)$", line)}
    _make("-t", stamp, venv)
    assert _installed_extras(_make("-n", "run", venv)) == []

    after_run = _make("-n", target, venv)
    assert not any(" -m venv " in line for line in after_run)
    assert _installed_extras(after_run) == [{"build", *extras}]

    # ...and once that target has installed its tools, the next run installs nothing.
    (tools_stamp,) = {
        m for line in after_run for m in re.findall(r"touch (\S+\.installed-\S+)$", line)
    }
    _make("-t", tools_stamp, venv)
    assert _installed_extras(_make("-n", target, venv)) == []


def test_the_editable_install_warns_of_nothing_and_finds_the_generated_code(
    tmp_path: Path,
) -> None:
    """A fresh clone: the protos are generated only after the project is installed."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    for package in RUNTIME_PACKAGES:
        shutil.copytree(ROOT / package, project / package)
    build = (
        "import sys, setuptools.build_meta as backend; print(backend.build_editable(sys.argv[1]))"
    )

    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", build, str(tmp_path / "dist")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr
    wheel = tmp_path / "dist" / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        (pth,) = (n for n in archive.namelist() if n.endswith(".pth"))
        entries = archive.read(pth).decode().split()
    # The project directory itself is on sys.path: `telephony/`, made later, imports too.
    assert entries == [str(project)]
