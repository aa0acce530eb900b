"""Self-hosted accounts for the studio: a TOML file of names, roles and scrypt password hashes, the command line
that edits it, and the `AccountBook` the running app checks sign-ins against (`launch(auth=book.verify)`).

    python -m app.accounts add NAME --role admin|annotator [--file accounts.toml] [--password PASSWORD]
    python -m app.accounts list [--file accounts.toml]
    python -m app.accounts remove NAME [--file accounts.toml]

The file defaults to `$STUDIO_ACCOUNTS`, else `accounts.toml` in the current folder. Without `--password` the
password is read from stdin (one line), or asked twice when stdin is a terminal. Passwords are never stored: each
is an `scrypt$16384$8$1$<salt>$<hash>` string (n=2**14, r=8, p=1, 32 bytes, a random 16-byte salt). The file is
written atomically with mode 0o600. Exit codes: 0 done, 2 bad input (with a one-line message on stderr).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import getpass
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import tempfile
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

ROLES = ("admin", "annotator")
MIN_PASSWORD_CHARS = 8
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN, SALT_BYTES = 2**14, 8, 1, 32, 16
DEFAULT_FILE = "accounts.toml"
HEADER = "# Video-LLM Studio accounts: python -m app.accounts add NAME --role admin|annotator\n"

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_MAX_N, _MAX_R, _MAX_P = 2**16, 32, 16  # bounds on a stored hash's cost, so a bad file cannot stall sign-in
_MAXMEM = 256 * 1024 * 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Account:
    """One person who may sign in: their name, role (`admin` or `annotator`) and scrypt password hash."""

    name: str
    role: str
    password_hash: str


class AccountsError(ValueError):
    """A bad name, role, password or accounts file; its text says what is wrong and what to do."""


def check_name(name: str) -> str:
    """The name itself when it is 1-64 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or
    `-`; otherwise an `AccountsError` saying so."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if isinstance(name, str) and len(name) <= 80 else "the name given"
        raise AccountsError(
            f"bad account name {shown}: use 1-64 characters of letters, digits, '_', '.' and '-', "
            "not starting with '.' or '-'"
        )
    return name


def check_role(role: str) -> str:
    """The role itself when it is one of `ROLES`; otherwise an `AccountsError` listing them."""
    if role not in ROLES:
        raise AccountsError(f"bad role {role!r}: use one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    """The password itself when it is a string of at least `MIN_PASSWORD_CHARS` characters."""
    if not isinstance(password, str) or not password:
        raise AccountsError("the password is empty: give one of at least 8 characters")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountsError(f"the password is too short: use at least {MIN_PASSWORD_CHARS} characters")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_MAXMEM)


def hash_password(password: str) -> str:
    """The stored form of a password: `scrypt$16384$8$1$<salt b64>$<hash b64>` with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, digest) of a well-formed stored hash within sane cost bounds; None otherwise."""
    if not isinstance(stored, str):
        return None
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(part.isdigit() for part in parts[1:4]):
        return None
    n, r, p = (int(part) for part in parts[1:4])
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches the stored hash, compared in constant time; False (never an exception) for a
    malformed hash or a password that is not a string."""
    parsed = _parse_hash(stored)
    if parsed is None or not isinstance(password, str):
        return False
    n, r, p, salt, digest = parsed
    try:
        candidate = _scrypt(password, salt, n, r, p, len(digest))
    except (ValueError, MemoryError, UnicodeError):
        return False
    return hmac.compare_digest(candidate, digest)


def _read_toml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AccountsError(
            f"accounts file {path} does not exist: create it with python -m app.accounts add NAME --role ROLE "
            f"--file {path}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise AccountsError(f"cannot read accounts file {path}: {error}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise AccountsError(f"accounts file {path} is not valid TOML: {error}") from None


def load_accounts(path: str | Path) -> dict[str, Account]:
    """The accounts in a file, by name; an `AccountsError` naming the file and the problem when it is missing,
    unreadable, not TOML, or holds an entry without a valid name, role or password hash."""
    path = Path(path)
    data = _read_toml(path)
    table = data.get("accounts", {})
    if not isinstance(table, dict):
        raise AccountsError(f"accounts file {path}: 'accounts' must be a table of [accounts.NAME] sections")
    accounts: dict[str, Account] = {}
    for name, entry in table.items():
        where = f"accounts file {path}, [accounts.{name}]"
        try:
            check_name(name)
        except AccountsError as error:
            raise AccountsError(f"{where}: {error}") from None
        if not isinstance(entry, dict):
            raise AccountsError(f"{where}: expected a section with role and password")
        role, stored = entry.get("role"), entry.get("password")
        if role not in ROLES:
            raise AccountsError(f"{where}: role must be one of {', '.join(ROLES)}, not {role!r}")
        if _parse_hash(stored) is None:
            raise AccountsError(
                f"{where}: password must be a scrypt$... hash written by python -m app.accounts add, "
                "never a plain password"
            )
        accounts[name] = Account(name=name, role=role, password_hash=stored)
    return accounts


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _toml_key(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else _toml_string(name)  # a dot would otherwise nest the table


def render_accounts(accounts: dict[str, Account]) -> str:
    """The TOML text of an accounts file, sections sorted by name."""
    lines = [HEADER]
    for name in sorted(accounts):
        account = accounts[name]
        check_name(account.name)
        check_role(account.role)
        lines.append(
            f"\n[accounts.{_toml_key(account.name)}]\n"
            f"role = {_toml_string(account.role)}\n"
            f"password = {_toml_string(account.password_hash)}\n"
        )
    return "".join(lines)


def save_accounts(path: str | Path, accounts: dict[str, Account]) -> None:
    """Write the accounts file atomically (a temporary file in the same folder, fsync, rename) with mode 0o600."""
    path = Path(path)
    text = render_accounts(accounts)
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise AccountsError(f"cannot write accounts file {path}: {error}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise AccountsError(f"cannot write accounts file {path}: {error}") from None
    _fsync_folder(folder)


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def add_account(path: str | Path, name: str, role: str, password: str) -> bool:
    """Add an account, or replace the password and role of an existing one, keeping the others; True if it was
    new. The file is created when it does not exist yet."""
    check_name(name)
    check_role(role)
    check_password(password)
    path = Path(path)
    accounts = load_accounts(path) if path.exists() else {}
    new = name not in accounts
    accounts[name] = Account(name=name, role=role, password_hash=hash_password(password))
    save_accounts(path, accounts)
    return new


def remove_account(path: str | Path, name: str) -> None:
    """Remove one account, keeping the others; an `AccountsError` when there is no such name."""
    check_name(name)
    accounts = load_accounts(path)
    if name not in accounts:
        raise AccountsError(f"no account named {name!r} in {path}")
    del accounts[name]
    save_accounts(path, accounts)


@functools.lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _file_stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


class AccountBook:
    """The accounts the running app checks sign-ins against, reloaded whenever the file changes (its mtime, size
    or inode), so `python -m app.accounts add` takes effect without a restart. A file that becomes unreadable or
    corrupt keeps the last good accounts (and logs why)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = _file_stamp(self.path)
        self._accounts = load_accounts(self.path)

    def _current(self) -> dict[str, Account]:
        stamp = _file_stamp(self.path)
        with self._lock:
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._accounts = load_accounts(self.path)
                except AccountsError as error:
                    log.warning("keeping the previous accounts: %s", error)
            return self._accounts

    def verify(self, name: str, password: str) -> bool:
        """Whether the name and password sign in; an unknown name still costs one scrypt, against a dummy hash."""
        account = self._current().get(name) if isinstance(name, str) else None
        if account is None:
            verify_password(password if isinstance(password, str) else "", _dummy_hash())
            return False
        return verify_password(password, account.password_hash)

    def role(self, name: str) -> str | None:
        """The account's role, or None when there is no such account."""
        account = self._current().get(name) if isinstance(name, str) else None
        return account.role if account else None

    def names(self) -> list[str]:
        """The account names, sorted."""
        return sorted(self._current())


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _build_parser() -> argparse.ArgumentParser:
    file_help = f"the accounts file (default: $STUDIO_ACCOUNTS if set, else {DEFAULT_FILE} in the current folder)"
    parser = _Parser(
        prog="python -m app.accounts",
        description="Manage the Video-LLM Studio's self-hosted accounts (a TOML file of names, roles and scrypt "
        "password hashes). Serve the studio with them: python app.py --accounts accounts.toml.",
        epilog="Exit codes: 0 done, 2 bad input (bad name, role or password, unreadable or corrupt file, unknown "
        "name).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{add,list,remove}", parser_class=_Parser)
    add = commands.add_parser(
        "add",
        help="add an account, or replace an existing one's password and role",
        description="Add an account, or replace the password and role of an existing one (other accounts are kept). "
        "Without --password, the password is read from stdin (one line), or asked twice on a terminal.",
    )
    add.add_argument("name", metavar="NAME", help="1-64 letters, digits, '_', '.', '-'; not starting with '.' or '-'")
    add.add_argument("--role", required=True, choices=ROLES, help="admin (everything) or annotator (chat and vote)")
    add.add_argument("--file", help=file_help)
    add.add_argument(
        "--password", help=f"at least {MIN_PASSWORD_CHARS} characters (visible to other local users; prefer stdin)"
    )
    listing = commands.add_parser(
        "list", help="show each account's name and role", description="Print one 'NAME ROLE' line per account."
    )
    listing.add_argument("--file", help=file_help)
    remove = commands.add_parser(
        "remove", help="remove an account", description="Remove one account; the others are kept."
    )
    remove.add_argument("name", metavar="NAME", help="the account to remove")
    remove.add_argument("--file", help=file_help)
    return parser


def _read_password() -> str:
    """The new password from stdin: asked twice on a terminal, otherwise its first line."""
    if sys.stdin is not None and sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            raise AccountsError("the two passwords differ: nothing was changed")
        return first
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.removesuffix("\n").removesuffix("\r")


def _run(args: argparse.Namespace) -> None:
    path = Path(args.file or os.environ.get("STUDIO_ACCOUNTS") or DEFAULT_FILE)
    if args.command == "add":
        check_name(args.name)
        check_role(args.role)
        password = args.password if args.password is not None else _read_password()
        new = add_account(path, args.name, args.role, password)
        print(f"{'added' if new else 'updated'} {args.name} ({args.role}) in {path}")
    elif args.command == "list":
        for account in sorted(load_accounts(path).values(), key=lambda account: account.name):
            print(f"{account.name} {account.role}")
    elif args.command == "remove":
        remove_account(path, args.name)
        print(f"removed {args.name} from {path}")


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    try:
        args = _build_parser().parse_args(argv)
    except SystemExit as done:  # --help (0) or a usage error (2, already reported)
        return done.code if isinstance(done.code, int) else 2
    try:
        _run(args)
    except AccountsError as error:
        print("error: " + " ".join(str(error).split()), file=sys.stderr)
        return 2
    except (KeyboardInterrupt, EOFError):
        print("interrupted: nothing was changed", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
