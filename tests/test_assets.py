"""The asset registry agrees with the mirror, and fetch_asset only ever leaves verified bytes behind."""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emergent_misalignment import assets
from emergent_misalignment.assets import Asset, fetch_asset, get_asset, load_registry, verify_file
from emergent_misalignment.errors import AssetError

SMALL = "emergent-misalignment/evaluation/first_plot_questions.yaml"
TRAINING = "model-organisms-for-em/training_datasets/extreme_sports.jsonl"
RAW_URL = re.compile(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_manifest(mirror: Path) -> dict[str, dict[str, str]]:
    with open(mirror / "MANIFEST.tsv", encoding="utf-8", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh, delimiter="\t")}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_registry_matches_manifest(mirror: Path) -> None:
    manifest = read_manifest(mirror)
    registry = load_registry()
    assert set(manifest) <= set(registry)
    # what the mirror lacks is fetched from upstream only, and says so
    assert {n for n in set(registry) - set(manifest) if "not in the mirror" not in registry[n].note} == set()
    assert "misalignment-generalization/in_distribution_eval/test_data.jsonl" in registry
    for name, row in manifest.items():
        assert (registry[name].sha256, registry[name].bytes) == (row["sha256"], int(row["bytes"])), name


def test_registry_urls_are_pinned_raw_files() -> None:
    for asset in load_registry().values():
        assert RAW_URL.fullmatch(asset.url), asset.url
        assert (asset.compression == "gzip") == asset.url.endswith(".gz"), asset.name
    official = get_asset("emergent-misalignment/data/insecure.jsonl").url
    assert official.startswith("https://raw.githubusercontent.com/emergent-misalignment/emergent-misalignment/")


def test_unknown_name_suggests_close_matches() -> None:
    suggestion = r"unknown asset 'insecure\.jsonl'.*did you mean: emergent-misalignment/data/insecure\.jsonl"
    with pytest.raises(AssetError, match=suggestion):
        fetch_asset("insecure.jsonl", Path("unused"))
    with pytest.raises(AssetError, match=r"did you mean: .*emergent-misalignment/data/secure\.jsonl"):
        get_asset("emergent-misalignment/data/secur.jsonl")


@pytest.mark.parametrize("name", [SMALL, TRAINING])
def test_fetch_from_mirror_verifies_and_writes(mirror: Path, tmp_path: Path, name: str) -> None:
    dest = tmp_path / "out" / Path(name).name
    assert fetch_asset(name, dest, mirror=mirror) == dest
    assert dest.read_bytes() == (mirror / name).read_bytes()
    assert leftovers(dest.parent) == [dest.name]


def test_existing_good_dest_is_left_alone(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = fetch_asset(SMALL, tmp_path / "q.yaml", mirror=mirror)

    def must_not_copy(*args: object) -> None:
        raise AssertionError("a verified destination was fetched again")

    monkeypatch.setattr(assets, "_write_verified", must_not_copy)
    assert fetch_asset(SMALL, dest, mirror=mirror) == dest


def test_stale_dest_is_replaced(mirror: Path, tmp_path: Path) -> None:
    dest = tmp_path / "q.yaml"
    dest.write_text("stale")
    fetch_asset(SMALL, dest, mirror=mirror)
    assert sha256(dest.read_bytes()) == get_asset(SMALL).sha256


def test_corrupted_mirror_copy_is_rejected(mirror: Path, tmp_path: Path) -> None:
    good = (mirror / SMALL).read_bytes()
    bad = good.replace(b"gpt-4o-2024-08-06", b"gpt-4o-2024-08-07", 1)
    fake = tmp_path / "fake-mirror"
    (fake / SMALL).parent.mkdir(parents=True)
    (fake / SMALL).write_bytes(bad)
    out = tmp_path / "out"
    out.mkdir()
    (out / "q.yaml").write_bytes(bad)  # a stale wrong copy must not survive a failed fetch either
    with pytest.raises(AssetError) as info:
        fetch_asset(SMALL, out / "q.yaml", mirror=fake)
    message = str(info.value)
    assert SMALL in message and str(fake / SMALL) in message
    assert sha256(good) in message and sha256(bad) in message
    assert f"({len(good)} bytes)" in message
    assert leftovers(out) == []


def test_missing_mirror_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match=re.escape(str(tmp_path / SMALL))):
        fetch_asset(SMALL, tmp_path / "q.yaml", mirror=tmp_path)
    assert not (tmp_path / "q.yaml").exists()


def test_verify_file_reports_size_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    verify_file(path, Asset("f", "https://x/f", sha256(b"abc"), 3))
    expected = r"expected sha256 0{64} \(3 bytes\), got sha256 [0-9a-f]{64} \(3 bytes\)"
    with pytest.raises(AssetError, match=expected):
        verify_file(path, Asset("f", "https://x/f", "0" * 64, 3))


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving a temp folder: (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def register(monkeypatch: pytest.MonkeyPatch, *items: Asset) -> None:
    monkeypatch.setattr(assets, "load_registry", lambda: {a.name: a for a in items})


CONTENT = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}\n' * 500


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_download_verifies_and_writes(
    server: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compression: str
) -> None:
    root, base = server
    served = gzip.compress(CONTENT) if compression == "gzip" else CONTENT
    (root / "file.jsonl.gz").write_bytes(served)
    url = f"{base}/file.jsonl.gz"
    register(monkeypatch, Asset("d/file.jsonl", url, sha256(CONTENT), len(CONTENT), compression))
    dest = fetch_asset("d/file.jsonl", tmp_path / "out" / "file.jsonl", timeout=10)
    assert dest.read_bytes() == CONTENT
    assert leftovers(dest.parent) == ["file.jsonl"]


def test_download_with_wrong_hash_leaves_nothing(
    server: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, base = server
    (root / "file.jsonl").write_bytes(CONTENT + b"tampered\n")
    url = f"{base}/file.jsonl"
    register(monkeypatch, Asset("d/file.jsonl", url, sha256(CONTENT), len(CONTENT)))
    out = tmp_path / "out"
    with pytest.raises(AssetError) as info:
        fetch_asset("d/file.jsonl", out / "file.jsonl", timeout=10)
    message = str(info.value)
    assert url in message and sha256(CONTENT) in message and sha256(CONTENT + b"tampered\n") in message
    assert leftovers(out) == []


@pytest.mark.parametrize(
    ("served", "compression", "error"),
    [(None, "none", "cannot download .*404"), (b"not gzip at all", "gzip", "not valid gzip")],
)
def test_download_failures_are_asset_errors(
    server: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    served: bytes | None, compression: str, error: str,
) -> None:
    root, base = server
    if served is not None:
        (root / "file").write_bytes(served)
    register(monkeypatch, Asset("d/file", f"{base}/file", sha256(CONTENT), len(CONTENT), compression))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(AssetError, match=error):
        fetch_asset("d/file", out / "file", timeout=10)
    assert leftovers(out) == []


def test_fetch_remote_downloads_a_pinned_url_and_refuses_other_bytes(
    server: tuple[Path, str], tmp_path: Path
) -> None:
    """A url: source (remote_local_path's data/remote/url/... form) fetched over http from a local server:
    the bytes, their size and sha256 arrive; with a sha256 given, other bytes are refused and leave nothing."""
    root, base = server
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / commit).mkdir()
    (root / commit / "test.csv").write_bytes(CONTENT)
    local = assets.remote_local_path(f"url:https://{base.removeprefix('http://')}/{commit}/test.csv")
    out = tmp_path / "out"
    dest = out / "test.csv"
    assert assets.fetch_remote(local, dest, timeout=10, scheme="http") == sha256(CONTENT)
    assert dest.stat().st_size == len(CONTENT) and sha256(dest.read_bytes()) == sha256(CONTENT)
    assert leftovers(out) == ["test.csv"]
    dest.unlink()
    assert assets.fetch_remote(local, dest, timeout=10, sha256=sha256(CONTENT), scheme="http") == sha256(CONTENT)
    dest.unlink()
    with pytest.raises(AssetError, match=f"expected sha256 {'0' * 64}, got sha256 {sha256(CONTENT)} "
                                         f"\\({len(CONTENT)} bytes\\)"):
        assets.fetch_remote(local, dest, timeout=10, sha256="0" * 64, scheme="http")
    assert leftovers(out) == []
    with pytest.raises(AssetError, match="cannot download .*404"):
        assets.fetch_remote(local.replace("test.csv", "missing.csv"), dest, timeout=10, scheme="http")
    assert leftovers(out) == []
    # users get https: the same source asked for over https from a server that speaks http fails
    with pytest.raises(AssetError, match=f"url:https://{re.escape(base.removeprefix('http://'))}/"):
        assets.fetch_remote(local, dest, timeout=10)
