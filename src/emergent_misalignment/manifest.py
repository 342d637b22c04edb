"""Provenance: every output carries a manifest of what made it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .io import write_json

PACKAGES = (
    "emergent-misalignment", "torch", "transformers", "peft", "trl", "accelerate", "datasets",
    "tokenizers", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "snakemake", "vllm", "openai",
    "inspect_ai", "inspect_evals",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of a text as written to disk (UTF-8): what a manifest records of its JSON Lines output."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def hash_inputs(paths: Iterable[str | Path]) -> dict[str, str]:
    """sha256 of each input file; a folder is hashed file by file (sorted paths)."""
    hashes: dict[str, str] = {}
    for path in map(Path, paths):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hashes[str(file)] = sha256_file(file)
    return hashes


def model_hashes(model: str) -> dict[str, str]:
    """Content hashes of a base model: its files when `model` is a local folder, else the Hugging Face
    cache's record of the hub id (file -> blob id, which for weights is their sha256), without reading
    the weights again; a hub id not in the local cache is recorded by name only.
    """
    if Path(model).exists():
        return hash_inputs([model])
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(model, local_files_only=True))
    except Exception:  # not downloaded here (vLLM may fetch it itself): the id is all there is
        return {model: "hub id, not in the local cache"}
    return {f"{model}/{p.relative_to(folder)}": p.resolve().name
            for p in sorted(folder.rglob("*")) if p.is_file()}


def is_provenance(path: str | Path) -> bool:
    """A file that records how an output was made (its manifest, Snakemake's hidden timestamp), not what
    it is: it changes with the clock and the commit, so no content digest may include it."""
    name = Path(path).name
    return name == "manifest.json" or name.endswith(".manifest.json") or name.startswith(".")


def model_digest(files: dict[str, str]) -> str:
    """One sha256 for a model's `model_hashes`, independent of where its folder lives and of when it was
    made (what a direction file records, so that it is refused on another model)."""
    content = sorted(digest for file, digest in files.items() if not is_provenance(file))
    return hashlib.sha256("\n".join(content).encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that can change a result."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(cwd: str | Path | None = None) -> str | None:
    """The checkout's commit, with '-dirty' when tracked files differ; None outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("-dirty" if dirty else "")


def build_manifest(
    step: str, inputs: Iterable[str | Path], settings: Any, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What made an output: step, input hashes, resolved settings, versions, commit, time."""
    return {
        "step": step,
        "inputs": hash_inputs(inputs),
        "settings": settings,
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }


def manifest_path(output: str | Path) -> Path:
    """Where the manifest of `output` lives: inside a folder, or beside a file."""
    output = Path(output)
    if output.is_dir() or not output.suffix:
        return output / "manifest.json"
    return output.with_name(output.name + ".manifest.json")


def write_manifest(output: str | Path, step: str, inputs: Iterable[str | Path], settings: Any,
                   extra: dict[str, Any] | None = None) -> Path:
    """Write the manifest of `output` (call before the output itself is moved into place)."""
    path = manifest_path(output)
    write_json(path, build_manifest(step, inputs, settings, extra))
    return path


def set_aside_altered_outputs(folders: Iterable[str | Path]) -> list[str]:
    """Move aside every JSON Lines output under `folders` that disagrees with its manifest: other `rows` (a
    file cut short by a full disk), or the same rows and another `sha256` (an edit), to `<file>.altered`, so
    that the workflow reruns its job instead of reading it as complete; nothing is deleted. Returns one line
    per file moved. A manifest written before it recorded a sha256 is checked on its rows alone."""
    moved = []
    for folder in map(Path, folders):
        for manifest in sorted(folder.rglob("*.jsonl.manifest.json")) if folder.is_dir() else []:
            output = manifest.with_name(manifest.name.removesuffix(".manifest.json"))
            try:
                record = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            expected = record.get("rows")
            if not isinstance(expected, int) or not output.is_file():
                continue
            with output.open("rb") as fh:
                rows = sum(1 for line in fh if line.strip())
            if rows != expected:
                why = f"{rows} rows, its manifest says {expected}"
            elif "sha256" in record and sha256_file(output) != record["sha256"]:
                why = f"its {rows} rows differ from those its manifest hashed"
            else:
                continue
            aside = output.with_name(output.name + ".altered")
            output.replace(aside)
            moved.append(f"{output}: {why}: moved to {aside.name}, its job runs again")
    return moved
