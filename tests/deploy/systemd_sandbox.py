"""Runs a command under the seccomp filters systemd would install for a unit file.

    python systemd_sandbox.py UNIT_FILE -- COMMAND [ARG...]

Without systemd as init (a container, CI) nothing else applies these settings, so this
mirrors what systemd (252, Debian 12) loads for them, each as a filter of its own:

- SystemCallFilter=: the first (allow) list plus @default, minus each later ~list; any
  other system call fails with SystemCallErrorNumber= (systemd-analyze names the groups);
- MemoryDenyWriteExecute=yes: mmap of memory both writable and executable, and
  mprotect or pkey_mprotect adding execute, fail with EPERM, as does shmat with SHM_EXEC;
- RestrictAddressFamilies=: socket() of any other family fails with EAFNOSUPPORT.

The filters pass to every child and cannot be lifted, so the command and whatever it
starts run with them. Only the standard library: it runs before the command's own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

# <seccomp.h>
_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP_EQ = 4
_CMP_GE = 5
_CMP_MASKED_EQ = 7
# <sys/mman.h>, <sys/shm.h>
_PROT_WRITE = 0x2
_PROT_EXEC = 0x4
_SHM_EXEC = 0o100000
# Above every address family Linux knows (AF_MAX is 46 in 6.x): all refused unless listed.
_FAMILIES_CHECKED = 64


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def read_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """A unit file's settings by section, in order, repeated keys kept (as systemd reads
    them: `#` and `;` start comments, a trailing backslash continues a line)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        if not sep or current is None:
            raise ValueError(f"{path}: not a setting: {raw!r}")
        current.append((key.strip(), value.strip()))
    return sections


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups (`@system-service`, ...) and what each holds."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.split()[0], [])
        elif line.startswith(" ") and members is not None:
            name = line.strip()
            if name and not name.startswith("#"):
                members.append(name)
    return groups


def _expand(names: list[str], groups: dict[str, list[str]], seen: set[str]) -> set[str]:
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
        elif name not in seen:
            seen.add(name)
            calls |= _expand(groups[name], groups, seen)
    return calls


class _Filters:
    def __init__(self) -> None:
        path = ctypes.util.find_library("seccomp")
        if path is None:
            raise OSError("libseccomp is missing")
        lib = ctypes.CDLL(path, use_errno=True)
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = (ctypes.c_uint32,)
        lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
        lib.seccomp_rule_add_array.argtypes = (
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.POINTER(_ArgCmp),
        )
        lib.seccomp_load.argtypes = (ctypes.c_void_p,)
        self.lib = lib

    def new(self, default_action: int) -> int:
        ctx = self.lib.seccomp_init(default_action)
        if not ctx:
            raise OSError("seccomp_init failed")
        return int(ctx)

    def rule(self, ctx: int, action: int, name: str, *compare: _ArgCmp) -> None:
        number = self.lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            return  # not a system call of this architecture
        args = (_ArgCmp * max(len(compare), 1))(*compare)
        result = self.lib.seccomp_rule_add_array(ctx, action, number, len(compare), args)
        if result < 0:
            raise OSError(-result, f"seccomp rule for {name}: {os.strerror(-result)}")

    def load(self, ctx: int) -> None:
        result = self.lib.seccomp_load(ctx)
        if result < 0:
            raise OSError(-result, f"seccomp_load: {os.strerror(-result)}")


def _refuse(number: int) -> int:
    return _ACT_ERRNO | number


def apply(unit: Path) -> str:
    """Loads the unit's filters into this process; says what it applied."""
    service = read_unit(unit).get("Service", [])
    settings = dict(service)
    allowed = _allowed_system_calls(service)
    filters = _Filters()
    applied = []
    if settings.get("MemoryDenyWriteExecute") == "yes":
        _deny_write_execute(filters)
        applied.append("MemoryDenyWriteExecute")
    if "RestrictAddressFamilies" in settings:
        _restrict_address_families(filters, settings["RestrictAddressFamilies"])
        applied.append("RestrictAddressFamilies")
    # Last: the allow list refuses seccomp() itself, as systemd orders it too.
    if allowed is not None:
        error = getattr(errno, settings.get("SystemCallErrorNumber", "EPERM"))
        ctx = filters.new(_refuse(error))
        for name in sorted(allowed):
            filters.rule(ctx, _ACT_ALLOW, name)
        filters.load(ctx)
        applied.append(f"SystemCallFilter ({len(allowed)} names allowed)")
    return ", ".join(applied)


def _allowed_system_calls(service: list[tuple[str, str]]) -> set[str] | None:
    """The SystemCallFilter= lines in order: an allow list plus @default, less each ~list."""
    allowed: set[str] | None = None
    groups = syscall_groups()
    for key, value in service:
        if key != "SystemCallFilter":
            continue
        deny = value.startswith("~")
        names = _expand(value.removeprefix("~").split(), groups, set())
        if allowed is None:
            if deny:
                raise ValueError("only an allow list first is mirrored")
            allowed = names | _expand(["@default"], groups, set())
        elif deny:
            allowed -= names
        else:
            allowed |= names
    return allowed


def _deny_write_execute(filters: _Filters) -> None:
    ctx = filters.new(_ACT_ALLOW)
    refuse = _refuse(errno.EPERM)
    write_exec = _PROT_WRITE | _PROT_EXEC
    for name in ("mmap", "mmap2"):
        filters.rule(ctx, refuse, name, _ArgCmp(2, _CMP_MASKED_EQ, write_exec, write_exec))
    for name in ("mprotect", "pkey_mprotect"):
        filters.rule(ctx, refuse, name, _ArgCmp(2, _CMP_MASKED_EQ, _PROT_EXEC, _PROT_EXEC))
    filters.rule(ctx, refuse, "shmat", _ArgCmp(2, _CMP_MASKED_EQ, _SHM_EXEC, _SHM_EXEC))
    filters.load(ctx)


def _restrict_address_families(filters: _Filters, listed: str) -> None:
    families = {int(getattr(socket, name)) for name in listed.split()}
    ctx = filters.new(_ACT_ALLOW)
    refuse = _refuse(errno.EAFNOSUPPORT)
    for family in range(_FAMILIES_CHECKED):
        if family not in families:
            filters.rule(ctx, refuse, "socket", _ArgCmp(0, _CMP_EQ, family, 0))
    filters.rule(ctx, refuse, "socket", _ArgCmp(0, _CMP_GE, _FAMILIES_CHECKED, 0))
    filters.load(ctx)


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(__doc__)
    apply(Path(argv[0]))
    os.execvp(argv[2], argv[2:])


if __name__ == "__main__":
    main(sys.argv[1:])
