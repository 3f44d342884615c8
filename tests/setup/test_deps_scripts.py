"""The set-up step's scripts on their own: the Debian package check, the host's apt mirror and
proxy as the image builds read them, and the constraints helpers.  Nothing here installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "deps"))
from extras import canonical, extras, pins, unpinned  # noqa: E402

ABSENT = "vipkeeper-no-such-package"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A temporary directory an unprivileged user can read too."""
    path = Path(tempfile.mkdtemp(prefix="vipkeeper-setup-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _as_unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like host")
def test_debian_check_without_root_names_the_missing_packages_and_fails(shared_dir: Path) -> None:
    listed = _write(shared_dir / "area.txt", f"# a comment\nmake  # installed\n{ABSENT}\n")
    result = subprocess.run(
        _as_unprivileged(["sh", str(ROOT / "deps" / "debian.sh"), str(listed)]),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert f"missing: {ABSENT}\n" in result.stderr
    assert f"apt-get install -y --no-install-recommends {ABSENT}\n" in result.stderr


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian-like host")
def test_debian_check_with_everything_installed_does_nothing(shared_dir: Path) -> None:
    listed = _write(shared_dir / "area.txt", "make\n")
    result = subprocess.run(
        _as_unprivileged(["sh", str(ROOT / "deps" / "debian.sh"), str(listed)]),
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_debian_check_without_dpkg_lists_every_package_and_fails(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "sed", "tr", "sort", "dirname"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    listed = _write(tmp_path / "area.txt", "zeta\nalpha beta  # two on a line\n")
    result = subprocess.run(
        ["sh", str(ROOT / "deps" / "debian.sh"), str(listed)],
        env={"PATH": str(bin_dir)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no dpkg/apt-get" in result.stderr
    assert "    alpha beta zeta \n" in result.stderr
    assert "DEPS_DEBIAN=skip" in result.stderr


def _detect(tmp_path: Path, os_release: str, sources_list: str = "", sources: str = "",
            apt_conf: str = "", **env: str) -> dict[str, str]:  # fmt: skip
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    _write(tmp_path / "sources.list", sources_list)
    if sources:
        _write(parts / "site.sources", sources)
    _write(tmp_path / "os-release", os_release)
    config = _write(
        tmp_path / "apt.conf",
        f'Dir::Etc::sourcelist "{tmp_path}/sources.list";\n'
        f'Dir::Etc::sourceparts "{parts}";\n{apt_conf}',
    )
    script = (
        f". {ROOT}/images/host-apt.sh; host_apt_detect; "
        'printf "%s\\n" "$apt_mirror" "$apt_security_mirror" "$apt_http_proxy"; '
        "host_apt_proxy_options"
    )
    result = subprocess.run(
        ["sh", "-c", script],
        env={
            "PATH": os.environ["PATH"],
            "APT_CONFIG": str(config),
            "HOST_APT_OS_RELEASE": str(tmp_path / "os-release"),
            **env,
        },
        capture_output=True,
        text=True,
        check=True,
    )
    mirror, security, proxy, options = [*result.stdout.split("\n"), ""][:4]
    return {"mirror": mirror, "security": security, "proxy": proxy, "options": options}


DEBIAN = "ID=debian\nVERSION_CODENAME=bookworm\n"
needs_apt_config = pytest.mark.skipif(
    shutil.which("apt-config") is None, reason="needs a Debian-like host"
)


@needs_apt_config
@pytest.mark.parametrize(
    ("os_release", "inputs", "expected"),
    [
        pytest.param(
            DEBIAN,
            {
                "sources_list": (
                    "# deb http://commented.example/debian bookworm main\n"
                    "deb http://thirdparty.example/repo bookworm stable\n"
                    "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm "
                    "main contrib\n"
                    "deb http://mirror.example/debian-security bookworm-security main\n"
                )
            },
            {
                "mirror": "http://mirror.example/debian",
                "security": "http://mirror.example/debian-security",
            },
            id="host mirror from one-line sources, skipping other archives",
        ),
        pytest.param(
            DEBIAN,
            {
                "sources": (
                    "Types: deb\nURIs: http://disabled.example/debian\nSuites: bookworm\n"
                    "Components: main\nEnabled: no\n\n"
                    "Types: deb deb-src\nURIs: http://local.example/debian\n"
                    "Suites: bookworm bookworm-updates\nComponents: main\n"
                    "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n Suites: not-a-field\n\n"
                    "Types: deb\nURIs: http://local.example/security\nSuites: bookworm-security\n"
                    "Components: main\n"
                ),
                "apt_conf": 'Acquire::http::Proxy "http://proxy.example:3142";\n',
            },
            {
                "mirror": "http://local.example/debian",
                "security": "http://local.example/security",
                "proxy": "http://proxy.example:3142",
                "options": " -o Acquire::http::Proxy=http://proxy.example:3142",
            },
            id="host mirror and proxy from deb822 sources",
        ),
        pytest.param(
            "ID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n",
            {"sources_list": "deb http://archive.example/ubuntu noble main\n"},
            {"mirror": "", "security": ""},
            id="no Debian mirror on a host of another distribution",
        ),
        pytest.param(
            DEBIAN,
            {
                "sources_list": "deb http://mirror.example/debian bookworm main\n",
                "DEBIAN_MIRROR": "http://chosen.example/debian",
            },
            {"mirror": "http://chosen.example/debian"},
            id="the Debian mirror from the environment wins",
        ),
    ],
)
def test_host_apt_detect_finds_the_mirror_security_mirror_and_proxy(
    tmp_path: Path, os_release: str, inputs: dict[str, str], expected: dict[str, str]
) -> None:
    found = _detect(tmp_path, os_release, **inputs)
    assert {key: found[key] for key in expected} == expected


def test_build_base_without_registry_or_mirror_says_how_to_set_debian_mirror(
    tmp_path: Path,
) -> None:
    """A fake `docker` that knows no image and reaches no registry; a host with no Debian apt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _write(bin_dir / "docker", "#!/bin/sh\nexit 1\n").chmod(0o755)
    _write(tmp_path / "os-release", "ID=other\n")
    result = subprocess.run(
        ["sh", str(ROOT / "images" / "base" / "build-base.sh"), str(tmp_path / "b"), "t:x"],
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOST_APT_OS_RELEASE": str(tmp_path / "os-release"),
            "REGISTRY_TIMEOUT": "5",
        },
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "no Debian mirror found in this host's apt configuration" in result.stderr
    assert "Set DEBIAN_MIRROR" in result.stderr
    assert not (tmp_path / "b").exists()


def test_extras_are_read_from_pyproject(tmp_path: Path) -> None:
    pyproject = _write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n[project.optional-dependencies]\n'
        'test = ["pytest"]\nkernel = ["pexpect"]\n',
    )
    assert extras(pyproject) == ["kernel", "test"]
    assert "test" in extras(ROOT / "pyproject.toml")


def test_unpinned_names_what_the_constraints_do_not_pin_exactly() -> None:
    constraints = pins(["# header", "Foo_Bar==1.0", "baz==2.0  # why"])
    assert canonical("Foo_Bar.x") == "foo-bar-x"
    assert unpinned(pins(["foo-bar==1.0", "baz==2.1", "new==0.1"]), constraints) == [
        "baz==2.1",
        "new==0.1",
    ]
    assert unpinned(pins(["foo-bar==1.0", "baz==2.0"]), constraints) == []
