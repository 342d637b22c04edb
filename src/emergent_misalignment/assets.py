"""External data files: a registry of pinned upstream URLs with size and sha256, and a verified fetch.

Every run uses exactly the published bytes: a file is only put in place after its size and sha256
match the registry (`assets.tsv`, packaged with the module).
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import cache, partial
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from .errors import AssetError

REMOTE = "data/remote"  # where hub: and url: sources are kept (remote_local_path)

REGISTRY_FILE = "assets.tsv"
COLUMNS = ("name", "url", "sha256", "bytes", "compression", "note")
COMPRESSIONS = ("none", "gzip")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Asset:
    """One external file. `sha256` and `bytes` describe the stored (decompressed) content."""

    name: str
    url: str
    sha256: str
    bytes: int
    compression: str = "none"
    note: str = ""


def _parse_row(row: dict[str, str], where: str) -> Asset:
    """Build an Asset from one TSV row, rejecting anything that could not be verified later."""
    if not row["name"] or row["name"].startswith("/") or ".." in Path(row["name"]).parts:
        raise AssetError(f"{where}: name must be a relative path without '..', got {row['name']!r}")
    if not row["url"].startswith("https://"):
        raise AssetError(f"{where}: {row['name']}: url must start with https://, got {row['url']!r}")
    if not _SHA256.fullmatch(row["sha256"]):
        raise AssetError(f"{where}: {row['name']}: sha256 must be 64 lowercase hex digits")
    if not row["bytes"].isdigit():
        raise AssetError(f"{where}: {row['name']}: bytes must be a whole number, got {row['bytes']!r}")
    if row["compression"] not in COMPRESSIONS:
        raise AssetError(f"{where}: {row['name']}: compression must be one of {COMPRESSIONS}, "
                         f"got {row['compression']!r}")
    return Asset(row["name"], row["url"], row["sha256"], int(row["bytes"]), row["compression"], row["note"])


@cache
def _registry() -> dict[str, Asset]:
    text = resources.files(__package__).joinpath(REGISTRY_FILE).read_text(encoding="utf-8")
    reader = csv.DictReader(text.splitlines(), delimiter="\t", quoting=csv.QUOTE_NONE)
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise AssetError(f"{REGISTRY_FILE}:1: header must be {COLUMNS}, got {reader.fieldnames}")
    assets: dict[str, Asset] = {}
    for row in reader:
        where = f"{REGISTRY_FILE}:{reader.line_num}"
        if None in row or None in row.values():
            raise AssetError(f"{where}: expected {len(COLUMNS)} tab-separated columns")
        asset = _parse_row(row, where)
        if asset.name in assets:
            raise AssetError(f"{where}: duplicate name {asset.name!r}")
        assets[asset.name] = asset
    return assets


def load_registry() -> dict[str, Asset]:
    """All registered assets by name (the packaged TSV is parsed once; callers get their own dict)."""
    return dict(_registry())


def get_asset(name: str) -> Asset:
    """The registered asset `name`; an unknown name lists the closest registered ones."""
    registry = load_registry()
    if name not in registry:
        close = [n for n in registry if n.endswith("/" + name)]
        close += [n for n in difflib.get_close_matches(name, registry, n=5, cutoff=0.5) if n not in close]
        hint = f"; did you mean: {', '.join(close)}" if close else f"; {len(registry)} assets are registered"
        raise AssetError(f"unknown asset {name!r} (not in {REGISTRY_FILE}){hint}")
    return registry[name]


def _digest(path: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


def verify_file(path: Path, asset: Asset, origin: str | None = None) -> None:
    """Raise AssetError unless `path` has the asset's registered size and sha256.

    `origin` names where the bytes came from (URL or mirror path) so the message points at the culprit.
    """
    sha, size = _digest(Path(path))
    if (sha, size) != (asset.sha256, asset.bytes):
        raise AssetError(
            f"asset {asset.name}: the copy from {origin or path} does not match the registry: "
            f"expected sha256 {asset.sha256} ({asset.bytes} bytes), got sha256 {sha} ({size} bytes)"
        )


@contextmanager
def _open_url(asset: Asset, timeout: float) -> Iterator[BinaryIO]:
    """The response body, gunzipped on the fly for gzip assets; the connection is closed on exit."""
    try:
        response = urllib.request.urlopen(asset.url, timeout=timeout)
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise AssetError(f"asset {asset.name}: cannot download {asset.url}: {exc}") from exc
    with response:
        if asset.compression == "gzip":
            with gzip.GzipFile(fileobj=response, mode="rb") as stream:
                yield stream  # type: ignore[misc]
        else:
            yield response


def _write_verified(
    dest: Path, asset: Asset, origin: str, open_source: Callable[[], AbstractContextManager[BinaryIO]]
) -> None:
    """Stream the source into a temp file beside `dest`, verify it, then rename; on any failure remove it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open_source() as src:
            try:
                shutil.copyfileobj(src, out, _CHUNK)
            except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
                raise AssetError(f"asset {asset.name}: {origin} is not valid gzip data: {exc}") from exc
            except (OSError, http.client.HTTPException) as exc:
                raise AssetError(f"asset {asset.name}: copying {origin} to {dest} failed: {exc}") from exc
        verify_file(Path(tmp), asset, origin)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def fetch_asset(name: str, dest: Path, mirror: Path | None = None, timeout: float = 60) -> Path:
    """Put the verified asset `name` at `dest` and return `dest`.

    With `mirror`, copy `mirror/name` (a local copy of the registry's files, stored decompressed);
    otherwise download the pinned URL (gunzipped while streaming when compression is gzip).
    Nothing is left at `dest` unless its size and sha256 match: a stale wrong file there is removed.
    """
    asset = get_asset(name)
    dest = Path(dest)
    if dest.is_dir():
        raise AssetError(f"asset {name}: destination {dest} is a directory")
    if dest.exists():
        try:
            verify_file(dest, asset)
            return dest
        except AssetError:
            dest.unlink()
    if mirror is not None:
        source = Path(mirror) / asset.name
        if not source.is_file():
            raise AssetError(f"asset {name}: not in the mirror {mirror} ({source} does not exist)")
        _write_verified(dest, asset, str(source), partial(open, source, "rb"))
    else:
        _write_verified(dest, asset, asset.url, lambda: _open_url(asset, timeout))
    return dest


# --- remote files pinned by a commit, not yet in the registry (Table 1's eval data) -----------------

_COMMIT = re.compile(r"[0-9a-f]{40}")
_HUB = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)@(?P<revision>[0-9a-f]{40})/(?P<filename>[\w./-]+)")


def remote_local_path(source: str) -> str:
    """Where a `hub:` or `url:` source is kept (data/remote/...), checking that it is pinned by a commit.

    `hub:<owner>/<dataset>@<commit>/<file>` is a file of a Hugging Face dataset repository at one commit;
    `url:https://...` a URL with a 40-hex commit in it (e.g. raw.githubusercontent.com/<repo>/<commit>/...).
    """
    kind, _, rest = source.partition(":")
    if kind == "hub" and _HUB.fullmatch(rest):
        return f"{REMOTE}/hub/{rest}"
    if kind == "url" and rest.startswith("https://") and _COMMIT.search(rest):
        return f"{REMOTE}/url/{rest.removeprefix('https://')}"
    raise AssetError(f"{source!r}: a remote data file is hub:<owner>/<dataset>@<40-hex commit>/<file> or "
                     "url:https://... with a 40-hex commit in it (a branch or tag can change)")


def fetch_remote(local: str, dest: Path, timeout: float = 60, *, sha256: str | None = None,
                 scheme: str = "https") -> str:
    """Download the source kept at `local` (remote_local_path's data/remote/... form) to `dest`, atomically;
    return its sha256. Integrity: the commit pins the content, and huggingface_hub checks a hub file's
    sha256 against the repository's LFS pointer; the digest is recorded in the manifest. With `sha256`, a
    download of other bytes is refused and nothing is left at `dest`. `scheme`: how a url: source is
    fetched (https, as remote_local_path requires; a test serves one over http from a local server)."""
    kind, _, rest = local.removeprefix(f"{REMOTE}/").partition("/")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as scratch:
        if kind == "hub":
            from huggingface_hub import hf_hub_download

            found = _HUB.fullmatch(rest)
            if found is None:
                raise AssetError(f"{local}: not a hub:<owner>/<dataset>@<commit>/<file> path")
            try:
                path = hf_hub_download(found["repo"], found["filename"], revision=found["revision"],
                                       repo_type="dataset", local_dir=scratch)
            except Exception as exc:  # the hub client raises its own errors and OSErrors alike
                raise AssetError(f"hub:{rest}: cannot download ({exc})") from exc
        else:
            path = Path(scratch) / "download"
            url = f"{scheme}://{rest}"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    path.write_bytes(response.read())
            except (OSError, ValueError, http.client.HTTPException) as exc:
                raise AssetError(f"url:{url}: cannot download ({exc})") from exc
        sha, size = _digest(Path(path))
        if sha256 is not None and sha != sha256:
            raise AssetError(f"{local}: the download does not match: expected sha256 {sha256}, "
                             f"got sha256 {sha} ({size} bytes)")
        os.replace(path, dest)
    return sha
