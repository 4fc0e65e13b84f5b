"""Tests for provenance.keys: encrypted keystore files, unlocking, lookup, and how the CLI gets the passphrase.

Each new_key/unlock runs scrypt (~0.5 s), so the tests share keys where they can."""
from __future__ import annotations

import json
import stat

import click
import pytest
from click.testing import CliRunner

from cli.main import cli
from provenance import keys
from provenance.errors import KeystoreError

from conftest import PASSPHRASE


@pytest.fixture
def keys_dir(home):
    return home / "keys"


def test_new_key_writes_an_encrypted_keystore_v3(tmp_path):
    info = keys.new_key(tmp_path / "keys", "Bolat Sadykov", "s3cret pass")

    assert info.path.parent == tmp_path / "keys"
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) & 0o077 == 0
    text = info.path.read_text()
    ks = json.loads(text)
    assert ks["version"] == 3
    assert ks["crypto"]["kdf"] == "scrypt"
    assert ks["provenance_name"] == "Bolat Sadykov"
    assert "0x" + ks["address"].lower() == info.address.lower()
    assert list(info.path.parent.iterdir()) == [info.path]  # no temporary file left behind

    account = keys.unlock(info, "s3cret pass")
    assert account.address == info.address
    private_hex = account.key.hex().removeprefix("0x")
    assert len(private_hex) == 64
    assert private_hex not in text.lower()


def test_wrong_passphrase_is_a_keystore_error(keys_dir):
    info = keys.find_key(keys_dir)
    with pytest.raises(KeystoreError, match="wrong passphrase for key 'Aigerim'"):
        keys.unlock(info, PASSPHRASE + "!")


def test_duplicate_name_is_refused(keys_dir):
    [existing] = keys.list_keys(keys_dir)
    before = existing.path.read_bytes()

    with pytest.raises(KeystoreError, match="already exists"):
        keys.new_key(keys_dir, "Aigerim", "another passphrase")
    with pytest.raises(KeystoreError, match="already exists"):  # same file name once slugged
        keys.new_key(keys_dir, "aigerim", "another passphrase")

    assert existing.path.read_bytes() == before
    assert keys.list_keys(keys_dir) == [existing]


@pytest.mark.parametrize("name", ["", "a/b", "../escape", "x" * 65, "semi;colon"])
def test_invalid_name_is_refused(tmp_path, name):
    with pytest.raises(KeystoreError, match="invalid key name"):
        keys.new_key(tmp_path, name, "passphrase")
    assert list(tmp_path.iterdir()) == []


def test_empty_passphrase_is_refused(tmp_path):
    with pytest.raises(KeystoreError, match="empty passphrase") as info:
        keys.new_key(tmp_path / "keys", "Bolat", "")
    assert "PROVENANCE_PASSPHRASE" in info.value.hint
    assert not (tmp_path / "keys").exists()


def test_find_key(keys_dir):
    second = keys.new_key(keys_dir, "Bolat", PASSPHRASE)
    [aigerim] = [k for k in keys.list_keys(keys_dir) if k.name == "Aigerim"]

    with pytest.raises(KeystoreError, match=r"several keys exist \(Aigerim, Bolat\)") as info:
        keys.find_key(keys_dir)
    assert "--key" in info.value.hint

    assert keys.find_key(keys_dir, "Bolat") == second
    assert keys.find_key(keys_dir, "bolat") == second  # the file stem
    assert keys.find_key(keys_dir, second.address.lower()) == second
    assert keys.find_key(keys_dir, "Aigerim") == aigerim
    with pytest.raises(KeystoreError, match="no key named 'Carol'") as info:
        keys.find_key(keys_dir, "Carol")
    assert "key list" in info.value.hint


def test_find_key_without_any_key(tmp_path):
    with pytest.raises(KeystoreError, match="no signing key yet") as info:
        keys.find_key(tmp_path)
    assert "key new" in info.value.hint


def test_new_key_after_an_interrupted_attempt(tmp_path):
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir()
    (keys_dir / "bolat.tmp").write_text('{"half": ')  # what a kill between open() and replace() leaves

    info = keys.new_key(keys_dir, "Bolat", PASSPHRASE)

    assert keys.list_keys(keys_dir) == [info]


# -- the CLI -----------------------------------------------------------------------------------------------------

def test_cli_key_new_reads_passphrase_from_environment(home):
    result = CliRunner().invoke(cli, ["key", "new", "--name", "Bolat"])

    assert result.exit_code == 0, result.output
    assert "created key 'Bolat'" in result.stdout
    info = keys.find_key(home / "keys", "Bolat")
    assert info.address in result.stdout
    assert keys.unlock(info, PASSPHRASE).address == info.address


def test_cli_key_new_without_passphrase_and_terminal_fails_cleanly(home, monkeypatch):
    monkeypatch.delenv("PROVENANCE_PASSPHRASE")

    result = CliRunner().invoke(cli, ["key", "new", "--name", "Bolat"], input="typed-but-not-a-tty\n")

    assert result.exit_code == 2
    assert "PROVENANCE_PASSPHRASE" in result.stderr
    assert isinstance(result.exception, SystemExit)  # no traceback
    assert [k.name for k in keys.list_keys(home / "keys")] == ["Aigerim"]


def _all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _all_commands(command, prefix + (name,))


def test_no_command_takes_a_passphrase_argument(home):
    """A passphrase on the command line would show in `ps` and the shell history."""
    result = CliRunner().invoke(cli, ["key", "new", "--help"])
    assert result.exit_code == 0
    assert "--name" in result.stdout
    options = result.stdout.split("Options:")[1]
    assert "pass" not in options.lower()

    for path, command in _all_commands(cli):
        for param in command.params:
            names = [param.name or ""] + list(param.opts) + list(param.secondary_opts)
            assert not any("pass" in n.lower() for n in names), (path, names)


def test_cli_key_list(home):
    result = CliRunner().invoke(cli, ["key", "list", "--json"])
    assert result.exit_code == 0
    [line] = result.stdout.splitlines()
    listed = json.loads(line)
    assert listed["name"] == "Aigerim"
    assert listed["address"] == keys.find_key(home / "keys").address


def test_cli_register_with_wrong_passphrase(home, monkeypatch, works_dir, tmp_path):
    runner = CliRunner()
    ledger = str(tmp_path / "ledger.db")
    assert runner.invoke(cli, ["--ledger", ledger, "init"]).exit_code == 0
    monkeypatch.setenv("PROVENANCE_PASSPHRASE", "not it")

    result = runner.invoke(cli, ["--ledger", ledger, "register", str(works_dir)])

    assert result.exit_code == 2
    assert "wrong passphrase for key 'Aigerim'" in result.stderr
    assert isinstance(result.exception, SystemExit)
    assert runner.invoke(cli, ["--ledger", ledger, "works", "list"]).stdout == ""


# -- import and export-public --------------------------------------------------------------------------------------
PRIVATE_HEX = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"  # a well-known test key


def test_imported_key_signs_registrations_that_verify(keys_dir, ledger, works_dir):
    import provenance
    from provenance.certificates import issue_certificate, verify_certificate

    info = keys.import_key(keys_dir, "Bolat", PASSPHRASE, private_key="0x" + PRIVATE_HEX + "\n")
    account = keys.unlock(info, PASSPHRASE)
    assert account.key.hex().removeprefix("0x") == PRIVATE_HEX
    assert PRIVATE_HEX not in info.path.read_text().lower()
    assert json.loads(info.path.read_text())["crypto"]["kdf"] == "scrypt"

    [r] = provenance.register(ledger, [works_dir / "brush-abstract.jpg"], account, artist="Bolat", workers=1).results
    result = verify_certificate(issue_certificate(ledger, r.work_id))
    assert result.ok and result.registrant == info.address


def test_import_keystore_re_encrypts_under_the_provenance_passphrase(tmp_path, keys_dir):
    from eth_account import Account

    source = tmp_path / "wallet.json"
    source.write_text(json.dumps(Account.encrypt(bytes.fromhex(PRIVATE_HEX), "wallet pass", kdf="pbkdf2")))

    with pytest.raises(KeystoreError, match="wrong passphrase for the keystore file"):
        keys.import_key(keys_dir, "Bolat", PASSPHRASE, keystore=source, keystore_passphrase="nope")
    info = keys.import_key(keys_dir, "Bolat", PASSPHRASE, keystore=source, keystore_passphrase="wallet pass")

    assert json.loads(info.path.read_text())["crypto"]["kdf"] == "scrypt"
    assert keys.unlock(info, PASSPHRASE).key.hex().removeprefix("0x") == PRIVATE_HEX
    with pytest.raises(KeystoreError, match="already stored as 'Bolat'"):  # one key, one name
        keys.import_key(keys_dir, "Bolat 2", PASSPHRASE, private_key=PRIVATE_HEX)


@pytest.mark.parametrize("bad", ["", "12" * 31, "zz" * 32, "00" * 32, "ff" * 32])
def test_import_refuses_a_bad_private_key_without_quoting_it(keys_dir, bad):
    with pytest.raises(KeystoreError) as info:
        keys.import_key(keys_dir, "Bolat", PASSPHRASE, private_key=bad)
    assert "private key" in info.value.message
    assert not bad or bad not in info.value.diagnostics()
    assert [k.name for k in keys.list_keys(keys_dir)] == ["Aigerim"]


def test_cli_key_import_reads_the_private_key_from_stdin_and_never_prints_it(home):
    result = CliRunner().invoke(cli, ["key", "import", "--name", "Bolat"], input=PRIVATE_HEX + "\n")

    assert result.exit_code == 0, result.output
    info = keys.find_key(home / "keys", "Bolat")
    assert f"imported key 'Bolat'  address {info.address}" in result.stdout
    assert PRIVATE_HEX not in result.output

    exported = CliRunner().invoke(cli, ["key", "export-public", "Bolat", "--json"])
    assert exported.exit_code == 0
    assert json.loads(exported.stdout) == {"name": "Bolat", "address": info.address}
    assert PRIVATE_HEX not in exported.output
    plain = CliRunner().invoke(cli, ["key", "export-public", "bolat"])
    assert plain.stdout == f"Bolat  {info.address}\n"


def test_cli_key_import_keystore(home, tmp_path, monkeypatch):
    from eth_account import Account

    source = tmp_path / "wallet.json"
    source.write_text(json.dumps(Account.encrypt(bytes.fromhex(PRIVATE_HEX), "wallet pass", kdf="pbkdf2")))

    missing = CliRunner().invoke(cli, ["key", "import", "--name", "Bolat", "--keystore", str(source)])
    assert missing.exit_code == 2 and "PROVENANCE_KEYSTORE_PASSPHRASE" in missing.stderr

    monkeypatch.setenv("PROVENANCE_KEYSTORE_PASSPHRASE", "wallet pass")
    result = CliRunner().invoke(cli, ["key", "import", "--name", "Bolat", "--keystore", str(source)])
    assert result.exit_code == 0, result.output
    assert keys.unlock(keys.find_key(home / "keys", "Bolat"), PASSPHRASE).key.hex().removeprefix("0x") == PRIVATE_HEX


def test_key_import_takes_no_secret_on_the_command_line():
    """Only --name and --keystore (a file path): a private key in argv would show in `ps` and shell history."""
    command = cli.commands["key"].commands["import"]
    assert {p.name for p in command.params} == {"name", "keystore_file"}
    assert isinstance(next(p for p in command.params if p.name == "keystore_file").type, click.Path)
    assert {p.name for p in cli.commands["key"].commands["export-public"].params} == {"name", "as_json"}
