"""geventp2p.config: the GEVENTP2P_* table, the config dataclasses, new_host's assembly and identity files."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from geventp2p import config
from geventp2p.config import ConnManagerConfig, HostConfig, IdentifyConfig, NoiseConfig
from geventp2p.exceptions import ConfigError, InvalidKeyError

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"GEVENTP2P_[A-Z0-9_]+")
# where variables are read: the library, the hot-path sources, the build, the test harness
SOURCES = [*ROOT.joinpath("geventp2p").rglob("*.py"), *ROOT.joinpath("_speedups").rglob("*.py"),
           ROOT / "setup.py", *ROOT.joinpath("tests", "interop").glob("*.py")]


def _names_in_sources() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        if path.name == "config.py" and path.parent.name == "geventp2p":
            continue  # the registry itself
        for name in set(NAME.findall(path.read_text(encoding="utf-8"))):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_variable_the_sources_name_is_registered():
    unregistered = {n: where for n, where in _names_in_sources().items() if n not in {v.name for v in config.ENV_VARS}}
    assert not unregistered, f"register these in geventp2p/config.py: {unregistered}"


def test_every_registered_variable_is_read_somewhere():
    found = _names_in_sources()
    unused = [v.name for v in config.ENV_VARS if v.name not in found]
    assert not unused, f"registered but read nowhere: {unused}"


def test_registry_entries_are_well_formed_and_unique():
    names = [v.name for v in config.ENV_VARS]
    assert len(names) == len(set(names))
    for v in config.ENV_VARS:
        assert NAME.fullmatch(v.name)
        assert v.when in ("runtime", "build", "tests")
        assert v.effect and v.default and v.read_by
    assert config.lookup("GEVENTP2P_CRYPTO").when == "runtime"
    with pytest.raises(KeyError):
        config.lookup("GEVENTP2P_NOPE")


def test_readme_lists_the_runtime_and_build_variables():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [v.name for v in config.ENV_VARS if v.when != "tests" and f"`{v.name}`" not in readme]
    assert not missing, f"README's environment table lacks {missing}"


def test_describe_shows_values_set_and_defaults():
    text = config.describe({"GEVENTP2P_CRYPTO": "pycryptodome"})
    assert "GEVENTP2P_CRYPTO  [runtime; read by geventp2p.crypto.backend]" in text
    assert "set to 'pycryptodome'" in text
    assert "unset (compiled modules where built)" in text  # GEVENTP2P_PURE_PYTHON
    assert config.current({})["GEVENTP2P_CRYPTO"] is None


def test_python_m_geventp2p_config():
    env = {"GEVENTP2P_CRYPTO": "cryptography", "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-m", "geventp2p.config"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    for v in config.ENV_VARS:
        assert v.name in p.stdout
    assert "set to 'cryptography'" in p.stdout
    bad = subprocess.run([sys.executable, "-m", "geventp2p.config", "--bogus"], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, env=env)
    assert bad.returncode == 2 and "--bogus" in bad.stderr


# --------------------------------------------------------------------------- config dataclasses


@pytest.mark.parametrize("kwargs", [
    dict(early_muxer_negotiation=1), dict(crypto_backend="openssl"),
])
def test_noise_config_validates(kwargs):
    with pytest.raises(ConfigError):
        NoiseConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(timeout=0), dict(timeout=True), dict(debounce=-1), dict(push="yes"), dict(signed_record=None),
    dict(agent_version=3), dict(protocol_version=None),
])
def test_identify_config_validates(kwargs):
    with pytest.raises(ConfigError):
        IdentifyConfig(**kwargs)


def test_configs_are_frozen_and_match_the_wire_defaults():
    from geventp2p.sansio.identify import PROTOCOL_VERSION

    cfg = IdentifyConfig()
    assert cfg.protocol_version == PROTOCOL_VERSION
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.timeout = 1.0  # type: ignore[misc]
    assert dataclasses.replace(NoiseConfig(), crypto_backend="pycryptodome").crypto_backend == "pycryptodome"


def test_host_config_validates():
    ok = dict(peer_id="12D3Koo", key_source="generated", key_type="Ed25519", listen=(), transports=("tcp",),
              security=("/noise",), muxers=("/yamux/1.0.0",), services=())
    HostConfig(**ok)
    assert HostConfig(**ok).connmgr is None and HostConfig(**ok).peerstore_grace_period is None
    HostConfig(**ok, connmgr=ConnManagerConfig(), peerstore_grace_period=0.0)
    for bad in (dict(security=()), dict(muxers=["/yamux/1.0.0"]), dict(peer_id=""), dict(noise=None),
                dict(identify=NoiseConfig()), dict(connmgr=IdentifyConfig()), dict(connmgr=(1, 2)),
                dict(peerstore_grace_period=-1.0), dict(peerstore_grace_period="60")):
        with pytest.raises(ConfigError):
            HostConfig(**{**ok, **bad})


def test_connmgr_config_defaults_are_gos_and_validate():
    cfg = ConnManagerConfig()
    assert (cfg.low, cfg.high, cfg.grace_period, cfg.silence_period) == (160, 192, 60.0, 10.0)
    from geventp2p.host.connmgr import ConnManagerConfig as Reexported

    assert Reexported is ConnManagerConfig
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.low = 1  # type: ignore[misc]
    for bad in (dict(low=5, high=4), dict(low=-1), dict(high=1.5), dict(low=False), dict(grace_period=-1),
                dict(silence_period=0), dict(silence_period=True)):
        with pytest.raises(ConfigError):
            ConnManagerConfig(**bad)


# --------------------------------------------------------------------------- new_host + host.config


def _close_all(*hosts):
    for h in hosts:
        h.close()


def test_host_config_records_what_was_built(tmp_path):
    import geventp2p
    from geventp2p.protocols.echo import EchoService
    from geventp2p.protocols.identify import IdentifyService

    class Custom:
        def start(self, host):
            self.host = host

        def close(self):
            pass

    echo = EchoService()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the new spelling does not warn
        h = geventp2p.new_host(listen=[], muxers=["mplex"], services=["identify", echo, Custom(), "identify"],
                               identify=IdentifyConfig(timeout=2.0, push=False), agent_version="me/1",
                               noise=NoiseConfig(early_muxer_negotiation=False))
    try:
        cfg = h.config
        assert isinstance(cfg, HostConfig)
        assert cfg.peer_id == str(h.id) and cfg.key_source == "generated" and cfg.key_type == "Ed25519"
        assert cfg.listen == () and cfg.transports == ("tcp", "quic", "ws")
        assert cfg.security == ("/noise", "/tls/1.0.0") and cfg.muxers == ("/mplex/6.7.0",)
        assert cfg.services == ("identify", "EchoService", "Custom")
        assert cfg.identify == IdentifyConfig(agent_version="me/1", timeout=2.0, push=False)
        assert cfg.noise.early_muxer_negotiation is False
        assert cfg.connmgr == ConnManagerConfig() and cfg.peerstore_grace_period == 60.0
        assert h.service(EchoService) is echo
        ids = h.service(IdentifyService)
        assert ids.timeout == 2.0 and ids.agent_version == "me/1" and not ids.push_enabled
    finally:
        h.close()


def test_noise_config_reaches_the_noise_transport():
    from geventp2p.crypto.keys import generate_key
    from geventp2p.defaults import make_security

    key = generate_key("ed25519")
    (on,) = make_security(key, ["noise"], ["/yamux/1.0.0"])
    (off,) = make_security(key, ["noise"], ["/yamux/1.0.0"], NoiseConfig(early_muxer_negotiation=False,
                                                                            crypto_backend="pycryptodome"))
    assert on.muxers == ("/yamux/1.0.0",) and off.muxers == ()
    assert off.backend.name == "pycryptodome"


def test_default_services_and_empty_list():
    import geventp2p

    a = geventp2p.new_host(listen=[])
    b = geventp2p.new_host(listen=[], services=[])
    try:
        assert a.config.services == ("identify", "ping")
        assert b.config.services == () and b.config.identify is None
        assert "/ipfs/id/1.0.0" not in b.get_protocols()
    finally:
        _close_all(a, b)


def test_enable_flags_still_work_and_warn():
    import geventp2p

    with pytest.warns(DeprecationWarning, match="services="):
        h = geventp2p.new_host(listen=[], enable_echo=True, enable_ping=False)
    try:
        assert h.config.services == ("identify", "echo")
    finally:
        h.close()
    with pytest.warns(DeprecationWarning):
        h = geventp2p.new_host(listen=[], services=["ping"], enable_identify=True, enable_ping=False)
    try:
        assert h.config.services == ("identify",)
    finally:
        h.close()


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(services=["gossip"]), "unknown service 'gossip'"),
    (dict(services=[object()]), "not a service"),
    (dict(muxers=["spdy"]), "unknown muxer 'spdy'"),
    (dict(security=["ssl"]), "unknown security 'ssl'"),
    (dict(transports=["sctp"]), "unknown transport 'sctp'"),
    (dict(key=b"\x00", key_file="x.key"), "key or key_file"),
])
def test_new_host_config_errors(kwargs, fragment):
    import geventp2p

    with pytest.raises(ConfigError, match=fragment):
        geventp2p.new_host(listen=[], **kwargs)


def test_one_factory_table_builds_every_named_component():
    from geventp2p import defaults
    from geventp2p.crypto.keys import generate_key

    assert set(defaults.FACTORIES) == {"security", "muxer", "transport", "service"}
    ctx = defaults.BuildContext(key=generate_key("ed25519"), muxer_ids=("/yamux/1.0.0",))
    for kind, table in defaults.FACTORIES.items():
        for name, factory in table.items():
            assert factory.kind == kind and factory.name == name
            obj = defaults.build(kind, name, ctx)
            assert obj is not None
            if factory.config_path is not None:
                assert dataclasses.is_dataclass(factory.config_class())
            closer = getattr(obj, "close", None)
            if kind == "service" and callable(closer):
                closer()
    m = defaults.make_muxer("yamux", max_inbound_streams=7, accept_backlog=7)
    assert m.config.max_inbound_streams == 7
    assert defaults.muxer_config("mplex", accept_backlog=3).accept_backlog == 3
    with pytest.raises(ConfigError):
        defaults.make_muxer("yamux", defaults.muxer_config("yamux"), accept_backlog=3)


# --------------------------------------------------------------------------- identity persistence


def test_load_or_create_identity_creates_0600_and_loads_the_same_key(tmp_path):
    import geventp2p
    from geventp2p.core.peer import PeerId

    path = tmp_path / "node.key"
    k1 = geventp2p.load_or_create_identity(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert k1.key_type.name == "Ed25519"
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]  # no temporary file left behind
    k2 = geventp2p.load_or_create_identity(str(path))
    assert PeerId.from_public_key(k1.public_key()) == PeerId.from_public_key(k2.public_key())
    assert path.read_bytes() == k1.marshal()


def test_new_host_key_file_gives_the_same_peer_id_twice(tmp_path):
    import geventp2p

    path = tmp_path / "node.key"
    a = geventp2p.new_host(listen=[], key_file=path, services=[])
    a.close()
    b = geventp2p.new_host(listen=[], key_file=str(path), services=[])
    b.close()
    assert a.id == b.id
    assert a.config.key_source == f"file:{path} (created)" and b.config.key_source == f"file:{path}"


@pytest.mark.parametrize("content", [b"", b"this is not a key\n", b"\x08\x01\x12\x03abc", b"\x00" * (65 * 1024)])
def test_corrupt_key_file_is_a_typed_error(tmp_path, content):
    import geventp2p

    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(InvalidKeyError, match="node.key"):
        geventp2p.load_or_create_identity(path)
    assert path.read_bytes() == content  # never overwritten


def test_public_key_file_is_not_an_identity(tmp_path):
    from geventp2p.crypto.keys import generate_key
    from geventp2p.identity import load_identity, read_key_file

    path = tmp_path / "pub.key"
    pub = generate_key("ed25519").public_key()
    path.write_bytes(pub.marshal())
    assert read_key_file(path) == pub
    with pytest.raises(InvalidKeyError):
        load_identity(path)


def test_world_readable_key_file_is_used_with_a_warning(tmp_path, caplog):
    import geventp2p

    path = tmp_path / "node.key"
    k1 = geventp2p.load_or_create_identity(path)
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING", logger="geventp2p.identity"):
        k2 = geventp2p.load_or_create_identity(path)
    assert k2.marshal() == k1.marshal()
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_creation_race_loses_to_the_existing_file(tmp_path, monkeypatch):
    """When another process publishes the file between our load and our create, its key wins."""
    from geventp2p import identity
    from geventp2p.crypto.keys import generate_key

    path = tmp_path / "node.key"
    theirs = generate_key("ed25519")
    real_generate = identity._keys.generate_key

    def generate_and_lose(key_type):
        path.write_bytes(theirs.marshal())  # the other process got there first
        return real_generate(key_type)

    monkeypatch.setattr(identity._keys, "generate_key", generate_and_lose)
    key, created = identity.load_or_create(path)
    assert not created and key.marshal() == theirs.marshal()
    assert [p.name for p in tmp_path.iterdir()] == ["node.key"]


def test_save_identity_refuses_to_clobber(tmp_path):
    from geventp2p.crypto.keys import generate_key
    from geventp2p.identity import load_identity, save_identity

    path = tmp_path / "k"
    k1, k2 = generate_key("ed25519"), generate_key("ed25519")
    save_identity(path, k1)
    with pytest.raises(FileExistsError):
        save_identity(path, k2)
    save_identity(path, k2, overwrite=True)
    assert load_identity(path).marshal() == k2.marshal()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_package_exports_are_visible_to_type_checkers():
    """Every lazily exported name is also imported under TYPE_CHECKING (mypy sees real types, not Any)."""
    import ast

    import geventp2p

    tree = ast.parse((ROOT / "geventp2p" / "__init__.py").read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    typed = {a.asname or a.name for n in ast.walk(block) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in n.names}
    assert typed == set(geventp2p.__all__) - {"__version__"}
    for name in geventp2p.__all__:
        assert getattr(geventp2p, name) is not None


@pytest.mark.parametrize("module", ["cli.py", "demo.py"])
def test_cli_and_demo_build_components_through_the_factory_table(module):
    source = (ROOT / "geventp2p" / module).read_text(encoding="utf-8")
    for cls in ("YamuxMuxer(", "MplexMuxer(", "NoiseTransport(", "PlaintextTransport(", "TcpTransport(",
                "YamuxConfig(", "MplexConfig("):
        assert cls not in source, f"{module} builds {cls[:-1]} itself; use geventp2p.defaults"
