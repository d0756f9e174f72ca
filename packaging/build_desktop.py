"""Build, package, describe and sign a desktop release: one command for CI and IT.

    EHR_SIGNING_KEY_FILE=/secure/org-signing.key python packaging/build_desktop.py

Produces in `dist/` (or `--out`):

- `ehr-desktop-<version>-linux-x86_64.tar.gz`: the PyInstaller one-folder build;
- `ehr-desktop_<version>_amd64.deb`: installs it to /opt/ehr-desktop, with a
  desktop entry, `/usr/bin/ehr-desktop` and the system-wide config file
  `/etc/ehr-desktop/config.toml` (a conffile: upgrades keep IT's edits);
- `ehr-desktop-<version>.cdx.json`: the CycloneDX SBOM of what the build bundles;
- for each of them `<file>.sha256` and `<file>.sig` (Ed25519, see release_signing.py).

A release is never left unsigned: without the key the command fails before
building. `--skip-freeze DIR --modules FILE` packages an existing one-folder build.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path

from release_signing import KEY_FILE_ENV, KEY_PASSPHRASE_ENV, load_private_key, sign_file

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
APP = "ehr-desktop"
#: Name of the bundled TUF root, the trust anchor of desktop/updates.py.
TUF_ROOT_RESOURCE = "update-root.json"
DEB_DEPENDS = (
    "libc6 (>= 2.31), libgl1, libegl1, libfontconfig1, libxkbcommon0, libxkbcommon-x11-0, "
    "libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-shape0, libdbus-1-3"
)
DESKTOP_ENTRY = """[Desktop Entry]
Type=Application
Name=Clinic Workstation
Comment=Patient charts, online and offline
Exec=/opt/ehr-desktop/ehr-desktop
Terminal=false
Categories=Office;MedicalSoftware;
"""


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def freeze(work: Path) -> Path:
    """Run PyInstaller; return the one-folder build directory."""
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "work"),
         str(PACKAGING / "ehr-desktop.spec")],
        check=True, cwd=ROOT,
    )  # fmt: skip
    return work / "dist" / APP


def _reproducible(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or info.mtime
    return info


def make_archive(build: Path, out: Path, version: str) -> Path:
    archive = out / f"{APP}-{version}-linux-x86_64.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(build, arcname=f"{APP}-{version}", filter=_reproducible)
    return archive


def make_deb(build: Path, out: Path, version: str, staging: Path) -> Path:
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(build, staging / "opt" / APP, symlinks=True)
    config = staging / "etc" / APP / "config.toml"
    config.parent.mkdir(parents=True)
    shutil.copyfile(PACKAGING / "config.example.toml", config)
    entry = staging / "usr" / "share" / "applications" / f"{APP}.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text(DESKTOP_ENTRY)
    launcher = staging / "usr" / "bin" / APP
    launcher.parent.mkdir(parents=True)
    launcher.symlink_to(f"/opt/{APP}/{APP}")
    debian = staging / "DEBIAN"
    debian.mkdir()
    size_kb = sum(p.lstat().st_size for p in staging.rglob("*") if p.is_file()) // 1024
    (debian / "control").write_text(
        f"Package: {APP}\nVersion: {version}\nArchitecture: amd64\n"
        f"Maintainer: Clinic IT <it@clinic.example.org>\nInstalled-Size: {size_kb}\n"
        f"Depends: {DEB_DEPENDS}\nSection: misc\nPriority: optional\n"
        "Description: Clinic workstation (patient charts, offline-capable)\n"
        " PySide6 desktop client of the clinic's FHIR sync server. Settings are in\n"
        " /etc/ehr-desktop/config.toml.\n"
    )
    (debian / "conffiles").write_text(f"/etc/{APP}/config.toml\n")
    deb = out / f"{APP}_{version}_amd64.deb"
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise SystemExit("dpkg-deb is needed to build the Debian package (apt install dpkg)")
    subprocess.run(  # noqa: S603 - fixed tool and arguments
        [dpkg_deb, "--root-owner-group", "-Zgzip", "--build", str(staging), str(deb)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return deb


def _normalised(distribution: str) -> str:
    return distribution.lower().replace("_", "-").replace(".", "-")


def bundled_requirements(modules_file: Path) -> list[str]:
    """`name==version` of every third-party distribution whose modules the build bundles.

    The product's own distribution (installed editable, it owns `desktop` and
    `shared_models`) is the SBOM's root component, not one of its requirements.
    """
    owners = importlib.metadata.packages_distributions()
    with (ROOT / "pyproject.toml").open("rb") as fh:
        own = _normalised(tomllib.load(fh)["project"]["name"])
    names = {
        dist
        for module in modules_file.read_text().split()
        for dist in owners.get(module, [])
        if _normalised(dist) != own
    }
    return sorted(f"{name}=={importlib.metadata.version(name)}" for name in names)


def make_sbom(out: Path, version: str, modules_file: Path, work: Path) -> Path:
    """CycloneDX SBOM of the third-party distributions inside the build."""
    requirements = work / "bundled-requirements.txt"
    requirements.write_text("\n".join(bundled_requirements(modules_file)) + "\n")
    sbom = out / f"{APP}-{version}.cdx.json"
    subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-m", "cyclonedx_py", "requirements", "--output-format", "JSON",
         "--output-reproducible", "--pyproject", str(ROOT / "pyproject.toml"),
         "--mc-type", "application", "--output-file", str(sbom), str(requirements)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return sbom


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_desktop.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build")
    parser.add_argument("--skip-freeze", type=Path, metavar="DIR", help="existing one-folder build")
    parser.add_argument(
        "--modules", type=Path, help="bundled-modules.txt of that build (default: from --work)"
    )
    parser.add_argument(
        "--tuf-root",
        type=Path,
        help="the update repository's root.json, bundled as resources/" + TUF_ROOT_RESOURCE,
    )
    args = parser.parse_args(argv)
    key_file = os.environ.get(KEY_FILE_ENV)
    if not key_file:
        parser.error(f"set {KEY_FILE_ENV} to the organisation's signing key: no unsigned releases")
    passphrase = os.environ.get(KEY_PASSPHRASE_ENV, "").encode() or None
    key = load_private_key(Path(key_file), passphrase)
    version = project_version()
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    build = args.skip_freeze or freeze(args.work)
    frozen_at = time.monotonic()
    if args.tuf_root:
        shutil.copyfile(args.tuf_root, build / "_internal" / "resources" / TUF_ROOT_RESOURCE)
    artifacts = [
        make_archive(build, args.out, version),
        make_deb(build, args.out, version, args.work / "deb-root"),
        make_sbom(
            args.out,
            version,
            args.modules or args.work / "work" / APP / "bundled-modules.txt",
            args.work,
        ),
    ]
    for artifact in artifacts:
        sign_file(artifact, key)
        print(f"{artifact.name}: {artifact.stat().st_size / 1e6:.1f} MB, signed")
    build_mb = (
        sum(p.stat().st_size for p in build.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6
    )
    print(f"one-folder build: {build_mb:.0f} MB; freeze {frozen_at - started:.0f} s, "
          f"package+sign {time.monotonic() - frozen_at:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
