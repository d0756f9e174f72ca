"""IT-controlled workstation configuration: system file, environment, user overrides by policy."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from desktop.config import ConfigurationError, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "packaging" / "config.example.toml"


def _self_signed_ca_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Clinic Root CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    """The shipped example config, with its CA bundle pointing at a real PEM file."""
    ca = tmp_path / "org-ca.pem"
    ca.write_bytes(_self_signed_ca_pem())
    system = tmp_path / "config.toml"
    system.write_text(EXAMPLE.read_text().replace("/etc/ehr-desktop/org-ca.pem", str(ca)))
    return {
        "EHR_DESKTOP_CONFIG": str(system),
        "EHR_DESKTOP_USER_CONFIG": str(tmp_path / "user.toml"),
    }


def test_example_system_file_is_read(env: dict[str, str]) -> None:
    config = load_config(env)
    assert config.server_url == "https://ehr.clinic.example.org"
    assert config.location == "loc-main-campus"
    assert config.idle_timeout_minutes == 10
    assert config.updates_base_url == "https://ehr.clinic.example.org/updates"
    assert config.user_may_override == {"idle_timeout_minutes", "proxy"}


def test_environment_wins_over_the_system_file(env: dict[str, str]) -> None:
    env["EHR_DESKTOP_SERVER_URL"] = "https://ehr2.clinic.example.org"
    env["EHR_DESKTOP_IDLE_TIMEOUT_MINUTES"] = "5"
    config = load_config(env)
    assert config.server_url == "https://ehr2.clinic.example.org"
    assert config.idle_timeout_minutes == 5


def test_user_may_change_only_what_policy_allows(env: dict[str, str]) -> None:
    Path(env["EHR_DESKTOP_USER_CONFIG"]).write_text('proxy = "http://proxy.local:3128"\n')
    assert load_config(env).proxy == "http://proxy.local:3128"
    Path(env["EHR_DESKTOP_USER_CONFIG"]).write_text('server_url = "https://evil.example"\n')
    with pytest.raises(ConfigurationError, match="does not allow changing server_url"):
        load_config(env)
    with pytest.raises(ConfigurationError, match="server_url"):
        Path(env["EHR_DESKTOP_USER_CONFIG"]).unlink()
        load_config(env, cli_overrides={"server_url": "https://evil.example"})


def test_user_may_shorten_but_not_lengthen_the_idle_timeout(env: dict[str, str]) -> None:
    assert load_config(env, cli_overrides={"idle_timeout_minutes": 3}).idle_timeout_minutes == 3
    with pytest.raises(ConfigurationError, match="only be shortened"):
        load_config(env, cli_overrides={"idle_timeout_minutes": 60})


def test_without_a_system_file_everything_is_overridable(tmp_path: Path) -> None:
    env = {
        "EHR_DESKTOP_CONFIG": str(tmp_path / "absent.toml"),
        "EHR_DESKTOP_USER_CONFIG": str(tmp_path / "absent-user.toml"),
    }
    config = load_config(env, cli_overrides={"server_url": "http://127.0.0.1:8000"})
    assert config.server_url == "http://127.0.0.1:8000"
    assert config.ca_bundle is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('server_url = "http://ehr.example.org"', "https"),
        ("idle_timeout_minutes = 0", "1-240"),
        ('ca_bundle = "/nonexistent/ca.pem"', "does not exist"),
        ('sever_url = "https://typo.example"', "unknown setting"),
        ('server_url = "https://ok.example"\n[policy]\nuser_may_override = ["colour"]', "unknown"),
        ("server_url = ", "cannot read"),
    ],
)
def test_bad_system_config_is_refused_with_the_reason(
    tmp_path: Path, line: str, message: str
) -> None:
    system = tmp_path / "config.toml"
    system.write_text(line + "\n")
    with pytest.raises(ConfigurationError, match=message) as info:
        load_config(
            {"EHR_DESKTOP_CONFIG": str(system), "EHR_DESKTOP_USER_CONFIG": str(tmp_path / "u.toml")}
        )
    assert "IT support" in info.value.user_message


def test_ca_bundle_pins_trust_to_the_organisation_ca(env: dict[str, str]) -> None:
    config = load_config(env)
    context = config.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    subjects = [dict(x[0] for x in cert["subject"]) for cert in context.get_ca_certs()]
    assert subjects == [{"commonName": "Test Clinic Root CA"}]
