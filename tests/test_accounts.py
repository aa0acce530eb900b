"""Tests of the self-hosted accounts: the `python -m app.accounts` command line as people run it (a real
subprocess), the file it writes (no plain passwords, mode 0o600, atomic), and the `AccountBook` the app signs in
against, including reloading after the file changes."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import app.accounts as accounts
from app.accounts import (
    ROLES,
    Account,
    AccountBook,
    AccountsError,
    add_account,
    check_name,
    hash_password,
    load_accounts,
    main,
    save_accounts,
    verify_password,
)

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "STUDIO_ACCOUNTS"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "app.accounts", *args],
        cwd=ROOT,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
    )


@pytest.fixture(scope="module")
def book_file(tmp_path_factory) -> Path:
    """An accounts file with an admin added with --password and an annotator whose password came on stdin."""
    path = tmp_path_factory.mktemp("accounts") / "accounts.toml"
    admin = cli("add", "boss", "--role", "admin", "--file", str(path), "--password", "correct horse")
    assert admin.returncode == 0, admin.stderr
    assert "added" in admin.stdout and "boss" in admin.stdout
    annotator = cli("add", "ann.1", "--role", "annotator", "--file", str(path), stdin="battery staple\n")
    assert annotator.returncode == 0, annotator.stderr
    assert "added" in annotator.stdout
    return path


def test_the_cli_writes_hashes_only_with_mode_600(book_file):
    text = book_file.read_text()
    assert "correct horse" not in text and "battery staple" not in text
    assert text.startswith("# Video-LLM Studio accounts: python -m app.accounts add NAME --role admin|annotator")
    assert stat.S_IMODE(book_file.stat().st_mode) == 0o600
    data = tomllib.loads(text)["accounts"]
    assert set(data) == {"boss", "ann.1"}  # a dotted name stays one key, not a nested table
    assert {entry["role"] for entry in data.values()} == set(ROLES)
    assert all(entry["password"].startswith("scrypt$16384$8$1$") for entry in data.values())
    assert not [p for p in book_file.parent.iterdir() if p.name != book_file.name]  # no temporary file left


def test_the_book_verifies_passwords_and_knows_roles(book_file):
    book = AccountBook(book_file)
    assert book.verify("boss", "correct horse")
    assert book.verify("ann.1", "battery staple")  # stdin's trailing newline is not part of the password
    assert not book.verify("boss", "correct horse ")
    assert not book.verify("boss", "battery staple")
    assert not book.verify("nobody", "correct horse")
    assert not book.verify("../boss", "correct horse")
    assert book.role("boss") == "admin" and book.role("ann.1") == "annotator" and book.role("nobody") is None
    assert book.names() == ["ann.1", "boss"]


def test_list_prints_names_and_roles_but_no_hashes(book_file):
    listed = cli("list", "--file", str(book_file))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == ["ann.1 annotator", "boss admin"]
    assert "scrypt$" not in listed.stdout + listed.stderr


def test_adding_again_replaces_password_and_role_and_keeps_the_others(tmp_path):
    path = tmp_path / "accounts.toml"
    assert add_account(path, "ann1", "annotator", "first password")
    assert add_account(path, "other", "annotator", "other password")
    kept = load_accounts(path)["other"]
    via_env = {"STUDIO_ACCOUNTS": str(path)}  # the default --file
    replaced = cli("add", "ann1", "--role", "admin", "--password", "second password", env=via_env)
    assert replaced.returncode == 0, replaced.stderr
    assert "updated" in replaced.stdout and "added" not in replaced.stdout
    accounts = load_accounts(path)
    assert accounts["ann1"].role == "admin"
    assert verify_password("second password", accounts["ann1"].password_hash)
    assert not verify_password("first password", accounts["ann1"].password_hash)
    assert accounts["other"] == kept


@pytest.mark.parametrize("name", ["../x", "<b>x</b>", "", "x" * 65, "-x", ".x", "a b"])
def test_bad_names_exit_2_and_leave_the_file_unchanged(tmp_path, name):
    path = tmp_path / "accounts.toml"
    add_account(path, "ann1", "annotator", "first password")
    before = path.read_bytes()
    result = cli("add", "--role", "annotator", "--file", str(path), "--password", "long enough", "--", name)
    assert result.returncode == 2
    assert "bad account name" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert path.read_bytes() == before
    with pytest.raises(AccountsError, match="bad account name"):
        check_name(name)


def test_bad_role_and_short_or_empty_passwords_exit_2(tmp_path):
    path = tmp_path / "accounts.toml"
    role = cli("add", "ann1", "--role", "root", "--file", str(path), "--password", "long enough")
    assert role.returncode == 2 and "invalid choice" in role.stderr and len(role.stderr.strip().splitlines()) == 1
    short = cli("add", "ann1", "--role", "annotator", "--file", str(path), stdin="short\n")
    assert short.returncode == 2 and "at least 8 characters" in short.stderr
    empty = cli("add", "ann1", "--role", "annotator", "--file", str(path), stdin="\n")
    assert empty.returncode == 2 and "empty" in empty.stderr
    assert not path.exists()
    assert main(["add", "x", "--role", "annotator", "--file", str(path), "--password", "1234567"]) == 2


def test_remove_keeps_the_others_and_refuses_unknown_names(tmp_path, capsys):
    path = tmp_path / "accounts.toml"
    add_account(path, "ann1", "annotator", "first password")
    add_account(path, "ann2", "annotator", "other password")
    assert main(["remove", "ann1", "--file", str(path)]) == 0
    assert list(load_accounts(path)) == ["ann2"]
    assert main(["remove", "ann1", "--file", str(path)]) == 2
    assert "no account named 'ann1'" in capsys.readouterr().err
    assert list(load_accounts(path)) == ["ann2"]


def test_help_says_everything():
    assert main(["--help"]) == 0
    result = cli("add", "--help")
    assert result.returncode == 0
    for word in ("--role", "--file", "--password", "STUDIO_ACCOUNTS", "stdin", "8 characters"):
        assert word in result.stdout, word


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[accounts.ann1\nrole = 1", "not valid TOML"),
        ('[accounts.ann1]\nrole = "root"\npassword = "scrypt$16384$8$1$AA==$AA=="\n', "role must be one of"),
        ('[accounts.ann1]\nrole = "annotator"\npassword = "hunter22"\n', "never a plain password"),
        ('[accounts."../x"]\nrole = "annotator"\npassword = "x"\n', "bad account name"),
        ('accounts = "ann1"\n', "must be a table"),
    ],
)
def test_a_corrupt_file_gives_a_clear_error(tmp_path, text, problem):
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    with pytest.raises(AccountsError, match=problem) as caught:
        load_accounts(path)
    assert str(path) in str(caught.value)
    result = cli("list", "--file", str(path))
    assert result.returncode == 2 and problem in result.stderr and str(path) in result.stderr
    added = cli("add", "ann2", "--role", "annotator", "--file", str(path), "--password", "long enough")
    assert added.returncode == 2 and path.read_text() == text


def test_a_missing_file_says_how_to_create_it(tmp_path):
    with pytest.raises(AccountsError, match="does not exist: create it with python -m app.accounts add"):
        AccountBook(tmp_path / "missing.toml")


def test_the_book_reloads_after_the_file_changes(tmp_path):
    path = tmp_path / "accounts.toml"
    add_account(path, "ann1", "annotator", "first password")
    book = AccountBook(path)
    assert book.verify("ann1", "first password") and not book.verify("ann2", "other password")
    add_account(path, "ann2", "admin", "other password")
    assert book.verify("ann2", "other password") and book.role("ann2") == "admin"
    add_account(path, "ann1", "annotator", "second password")
    assert book.verify("ann1", "second password") and not book.verify("ann1", "first password")
    path.write_text("not toml [")  # a broken edit keeps the last good accounts
    assert book.verify("ann1", "second password")


def test_hashes_are_salted_and_malformed_ones_never_verify():
    first, second = hash_password("same password"), hash_password("same password")
    assert first != second and verify_password("same password", first) and verify_password("same password", second)
    for bad in ("", "scrypt$", first.replace("scrypt$", "bcrypt$"), first + "$x", first[:-8] + "!!!!!!!!", None):
        assert verify_password("same password", bad) is False
    huge = first.replace("$16384$", f"${2**30}$")
    assert verify_password("same password", huge) is False


def test_save_writes_atomically_with_mode_600(tmp_path):
    path = tmp_path / "accounts.toml"
    path.write_text("old")
    path.chmod(0o644)
    save_accounts(path, {"a_b-c": Account("a_b-c", "admin", hash_password("long enough"))})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(load_accounts(path)) == ["a_b-c"]
    assert [p.name for p in tmp_path.iterdir()] == ["accounts.toml"]


def test_a_terminal_asks_twice_and_refuses_a_mismatch(tmp_path, monkeypatch, capsys):
    path = tmp_path / "accounts.toml"
    terminal = io.StringIO()
    terminal.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdin", terminal)
    answers = iter(["first password", "other password", "same password", "same password"])
    monkeypatch.setattr(accounts.getpass, "getpass", lambda prompt="": next(answers))
    assert main(["add", "ann1", "--role", "annotator", "--file", str(path)]) == 2
    assert "differ" in capsys.readouterr().err and not path.exists()
    assert main(["add", "ann1", "--role", "annotator", "--file", str(path)]) == 0
    assert AccountBook(path).verify("ann1", "same password")


def test_an_unknown_name_still_costs_one_scrypt(tmp_path, monkeypatch):
    path = tmp_path / "accounts.toml"
    add_account(path, "ann1", "annotator", "first password")
    book = AccountBook(path)
    accounts._dummy_hash()
    calls = []
    real = accounts._scrypt
    monkeypatch.setattr(accounts, "_scrypt", lambda *args: calls.append(args[2:]) or real(*args))
    assert not book.verify("nobody", "first password")
    assert not book.verify("ann1", "wrong password")
    assert calls == [(16384, 8, 1, 32), (16384, 8, 1, 32)]
