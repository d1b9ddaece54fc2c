"""The geventp2p CLI: keygen / id / demo, in-process and as a subprocess."""

from __future__ import annotations

import os
import stat
import re
import subprocess
import sys
from pathlib import Path

import pytest

import crypto_vectors as V
from geventp2p import cli
from geventp2p.core.peer import PeerId
from geventp2p.crypto.keys import KeyType, unmarshal_private_key

H = bytes.fromhex


def run(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(*args, timeout=60):
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "geventp2p.cli", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.mark.parametrize("kt,expected_type,prefix", [
    ("ed25519", KeyType.Ed25519, "12D3KooW"),
    ("secp256k1", KeyType.Secp256k1, "16Uiu2"),
    ("ecdsa", KeyType.ECDSA, "Qm"),
    ("rsa", KeyType.RSA, "Qm"),
])
def test_keygen_then_id(tmp_path, capsys, kt, expected_type, prefix):
    out_file = tmp_path / "key"
    rc, out, err = run(["keygen", "--type", kt, "--out", str(out_file)], capsys)
    assert rc == 0 and err == ""
    printed = out.strip()
    assert printed.startswith(prefix) and "\n" not in printed
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    key = unmarshal_private_key(out_file.read_bytes())
    assert key.key_type is expected_type
    assert str(PeerId.from_public_key(key.public_key())) == printed
    rc, out, err = run(["id", "--key", str(out_file)], capsys)
    assert (rc, out, err) == (0, printed + "\n", "")
    rc, out, _ = run(["id", "--key", str(out_file), "--format", "cid"], capsys)
    assert rc == 0 and PeerId.from_string(out.strip()) == PeerId.from_string(printed)
    assert out.startswith("bafz")


def test_keygen_default_is_ed25519(tmp_path, capsys):
    rc, out, _ = run(["keygen", "--out", str(tmp_path / "k")], capsys)
    assert rc == 0 and out.startswith("12D3KooW")


def test_keygen_refuses_overwrite(tmp_path, capsys):
    f = tmp_path / "key"
    f.write_bytes(b"precious")
    rc, out, err = run(["keygen", "--out", str(f)], capsys)
    assert rc == 1 and out == ""
    assert err.startswith("geventp2p: error: ") and "--force" in err and err.count("\n") == 1
    assert f.read_bytes() == b"precious"


def test_keygen_force_overwrites_with_0600(tmp_path, capsys):
    f = tmp_path / "key"
    f.write_bytes(b"old")
    os.chmod(f, 0o644)
    rc, out, _ = run(["keygen", "--force", "--out", str(f)], capsys)
    assert rc == 0
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert str(PeerId.from_public_key(unmarshal_private_key(f.read_bytes()).public_key())) == out.strip()
    assert [p.name for p in tmp_path.iterdir()] == ["key"]  # no temporary file left behind


def test_keygen_bits(tmp_path, capsys):
    rc, _, err = run(["keygen", "--type", "rsa", "--bits", "1024", "--out", str(tmp_path / "k")], capsys)
    assert rc == 1 and "too small" in err and not (tmp_path / "k").exists()
    rc, _, err = run(["keygen", "--type", "ed25519", "--bits", "4096", "--out", str(tmp_path / "k")], capsys)
    assert rc == 1 and "--bits only applies" in err


def test_keygen_into_missing_directory(tmp_path, capsys):
    rc, _, err = run(["keygen", "--out", str(tmp_path / "no" / "such" / "k")], capsys)
    assert rc == 1 and err.startswith("geventp2p: error: cannot write")


def test_id_of_spec_key_and_public_key_file(tmp_path, capsys):
    priv = tmp_path / "priv"
    priv.write_bytes(H(V.ED25519_PRIV))
    pub = tmp_path / "pub"
    pub.write_bytes(H(V.ED25519_PUB))
    expected = V.PEER_IDS[V.ED25519_PUB][0] + "\n"
    assert run(["id", "--key", str(priv)], capsys) == (0, expected, "")
    assert run(["id", "--key", str(pub)], capsys) == (0, expected, "")


@pytest.mark.parametrize("content", [b"", b"junk", H(V.ED25519_PRIV)[:-1], b"\x08\x01\x12\x40" + bytes(64),
                                     b"x" * 70000])
def test_id_bad_file(tmp_path, capsys, content):
    f = tmp_path / "bad"
    f.write_bytes(content)
    rc, out, err = run(["id", "--key", str(f)], capsys)
    assert rc == 1 and out == ""
    assert err.startswith("geventp2p: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_id_missing_file(tmp_path, capsys):
    rc, out, err = run(["id", "--key", str(tmp_path / "nope")], capsys)
    assert rc == 1 and out == "" and "cannot read key file" in err and err.count("\n") == 1


def test_id_directory(tmp_path, capsys):
    rc, _, err = run(["id", "--key", str(tmp_path)], capsys)
    assert rc == 1 and err.startswith("geventp2p: error: ")


def test_no_subcommand_prints_help(capsys):
    rc, out, err = run([], capsys)
    assert rc == 2 and "keygen" in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(["keygen"])  # --out missing
    assert ei.value.code == 2
    with pytest.raises(SystemExit) as ei:
        cli.main(["keygen", "--type", "dsa", "--out", "x"])
    assert ei.value.code == 2
    capsys.readouterr()


def test_parser_is_extensible():
    def _register_hello(sub):
        p = sub.add_parser("hello")
        p.set_defaults(func=lambda args: 7)

    cli.REGISTRARS.append(_register_hello)
    try:
        assert cli.main(["hello"]) == 7
    finally:
        cli.REGISTRARS.remove(_register_hello)


# ------------------------------------------------------------------ as a subprocess


def test_subprocess_keygen_and_id(tmp_path):
    f = tmp_path / "key"
    r = run_subprocess("keygen", "--type", "secp256k1", "--out", str(f))
    assert r.returncode == 0 and r.stderr == ""
    assert r.stdout.startswith("16Uiu2")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    r2 = run_subprocess("id", "--key", str(f))
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_subprocess_bad_file_is_one_line(tmp_path):
    f = tmp_path / "bad"
    f.write_bytes(b"\x08\x09\x12\x01x")
    r = run_subprocess("id", "--key", str(f))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("geventp2p: error: ") and r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_console_script(tmp_path):
    script = Path(sys.executable).parent / "geventp2p"
    if not script.exists():
        pytest.skip("console script not installed in this environment")
    r = subprocess.run([str(script), "demo", "--streams", "20", "--bytes", "64KiB", "--no-progress"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^failures +0$", r.stdout, re.M), r.stdout
