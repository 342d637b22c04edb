"""The Nix flake, checked offline: it parses, its lock pins nixpkgs completely, `nix flake metadata`
reads it, and evaluated against a stub nixpkgs its shells hold what the workflow and the paper need.

nixpkgs itself cannot be downloaded here, so building the shells is left to machines with network
(docs/scale-out.md). Debian's nix-bin is installed when missing (root and apt-get needed).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NIX_CONFIG = "experimental-features = nix-command flakes\nsubstituters ="  # no binary cache: offline
# \usepackage name -> TeX Live package that ships it (None: part of the LaTeX kernel).
TEX_PACKAGE = {"fontenc": None, "lmodern": "lm", "graphicx": "graphics", "longtable": "tools"}
# TeX Live packages the flake adds because a package of main.tex loads them.
TEX_DEPENDENCIES = {"fancyvrb", "etoolbox", "lineno", "upquote", "xstring", "pdftexcmds"}
# pyproject dependency -> nixpkgs python attribute, where they differ.
PYTHON_ATTR = {"pyyaml": "pyyaml", "inspect_ai": "inspect-ai"}
SYSTEMS = {"x86_64-linux", "aarch64-linux", "x86_64-darwin", "aarch64-darwin"}

# A stand-in for nixpkgs with just what flake.nix uses: derivations are attrsets that remember
# their name and, for environments, what went into them.
STUB_NIXPKGS = r"""
{ system, config ? { } }:
let
  drv = name: extra: { type = "derivation"; inherit name; outPath = "/nix/store/stub-${name}"; } // extra;
  names = builtins.fromJSON (builtins.readFile ./names.json);
  attrs = list: builtins.listToAttrs (map (n: { name = n; value = drv n { }; }) list);
  ps = attrs names.python // {
    buildPythonPackage = a: drv a.pname { };
    fetchPypi = a: a;
    toPythonModule = d: d;
  };
in {
  inherit system config;
  python3 = { withPackages = f: drv "python3-env" { packages = map (p: p.name) (f ps); }; };
  texliveBasic = { withPackages = f: drv "texlive" { packages = map (p: p.name) (f (attrs names.tex)); }; };
  snakemake = drv "snakemake" { override = _: drv "snakemake" { }; };
  writeShellScriptBin = name: _: drv name { };
  writeShellApplication = a: drv a.name { runtimeInputs = map (p: p.name) a.runtimeInputs; };
  mkShell = a: drv "shell" { packages = a.packages; inherit config; };
  ruff = drv "ruff" { };
  git = drv "git" { };
}
"""

STUB_LIB = r"""
{
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);
  recursiveUpdate = a: b: a // builtins.mapAttrs
    (n: v: if a ? ${n} && builtins.isAttrs v && builtins.isAttrs a.${n} then a.${n} // v else v) b;
}
"""

EVAL = r"""
let
  flake = import %(flake)s;
  nixpkgs = { lib = import %(lib)s; outPath = %(stub)s; };
  out = flake.outputs { self = { }; inherit nixpkgs; };
  shell = s: {
    python = (builtins.head s.packages).packages;
    tex = (builtins.elemAt s.packages 1).packages;
    names = map (p: p.name) s.packages;
    inherit (s) config;
  };
in {
  description = flake.description;
  shells = builtins.mapAttrs (system: shells: builtins.mapAttrs (_: shell) shells) out.devShells;
  apps = builtins.mapAttrs (system: apps: { inherit (apps.default) type program; }) out.apps;
}
"""


@pytest.fixture(scope="module")
def nix() -> dict[str, str]:
    """Debian's nix-bin (installed with apt-get when missing); the environment to run it in."""
    if not shutil.which("nix-instantiate"):
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.skip("nix-instantiate is missing and installing nix-bin needs root and apt-get")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nix-bin"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            done = subprocess.run(install, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"apt-get could not install nix-bin: {done.stderr[-300:]}")
    return {**os.environ, "NIX_CONFIG": NIX_CONFIG}


def nix_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.nix"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / name for name in listed]


def lock() -> dict:
    return json.loads((REPO / "flake.lock").read_text())


def test_every_nix_file_parses(nix):
    files = nix_files()
    assert REPO / "flake.nix" in files
    for path in files:
        done = subprocess.run(["nix-instantiate", "--parse", str(path)], env=nix, capture_output=True, text=True)
        assert done.returncode == 0, f"{path}: {done.stderr}"


def test_lock_pins_nixpkgs_to_one_complete_revision():
    data = lock()
    assert data["version"] == 7
    node = data["nodes"][data["nodes"][data["root"]]["inputs"]["nixpkgs"]]
    locked = node["locked"]
    assert locked["type"] == "github" and locked["owner"] == "NixOS" and locked["repo"] == "nixpkgs"
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert 1_700_000_000 < locked["lastModified"] < 2_000_000_000
    # the lock answers the flake's input: same branch
    url = re.search(r'inputs\.nixpkgs\.url = "([^"]+)"', (REPO / "flake.nix").read_text())[1]
    assert url == f"github:{node['original']['owner']}/{node['original']['repo']}/{node['original']['ref']}"


def test_docs_name_the_locked_revision_and_its_source():
    text = (REPO / "docs" / "scale-out.md").read_text()
    locked = lock()["nodes"]["nixpkgs"]["locked"]
    assert locked["rev"] in text and locked["narHash"] in text
    assert locked["rev"] in (REPO / "flake.nix").read_text()


def test_flake_metadata_reads_the_lock_offline(nix, tmp_path):
    """`nix flake metadata` on a copy (a flake in git sees only committed files; this one may not be)."""
    for name in ("flake.nix", "flake.lock"):
        shutil.copy(REPO / name, tmp_path / name)
    done = subprocess.run(["nix", "flake", "metadata", "--json", "--no-update-lock-file", "--no-write-lock-file",
                           f"path:{tmp_path}"], env=nix, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 and re.search(r"unable to download|Could not resolve|cannot connect", done.stderr):
        pytest.skip(f"nix flake metadata needs the network here: {done.stderr.strip()[-300:]}")
    assert done.returncode == 0, done.stderr
    metadata = json.loads(done.stdout)
    assert metadata["locks"]["nodes"]["nixpkgs"]["locked"] == lock()["nodes"]["nixpkgs"]["locked"]
    show = subprocess.run(["nix", "flake", "show", "--offline", f"path:{tmp_path}"], env=nix, capture_output=True, text=True,
                          timeout=60)
    if show.returncode == 0:
        assert "devShells" in show.stdout and "apps" in show.stdout, show.stdout
    else:  # evaluating the outputs needs nixpkgs: offline, that download of the locked revision is all that fails
        errors = [line for line in show.stderr.splitlines() if line.startswith("error:")]
        rev = lock()["nodes"]["nixpkgs"]["locked"]["rev"]
        assert len(errors) == 1 and "unable to download" in errors[0] and f"NixOS/nixpkgs/tarball/{rev}" in errors[0], \
            show.stderr


@pytest.fixture(scope="module")
def evaluated(nix, tmp_path_factory) -> dict:
    """flake.nix's outputs evaluated against the stub nixpkgs."""
    stub = tmp_path_factory.mktemp("nixpkgs")
    (stub / "default.nix").write_text(STUB_NIXPKGS)
    (stub / "lib.nix").write_text(STUB_LIB)
    python = [*python_attrs(), "vllm", "bitsandbytes", "pytest", "poetry-core", "hatchling", "throttler",
              "snakemake-interface-common", "snakemake-interface-executor-plugins"]
    (stub / "names.json").write_text(json.dumps({"python": python, "tex": ["latexmk", *tex_packages(), *TEX_DEPENDENCIES]}))
    expr = EVAL % {"flake": REPO / "flake.nix", "lib": stub / "lib.nix", "stub": json.dumps(str(stub))}
    done = subprocess.run(["nix-instantiate", "--eval", "--strict", "--json", "-E", expr], env=nix,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def python_attrs() -> list[str]:
    """The nixpkgs attributes of pyproject.toml's direct dependencies."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return [PYTHON_ATTR.get(d.lower(), d.lower()) for d in (re.split(r"[<>=!~ \[]", d)[0] for d in deps)]


def tex_packages() -> list[str]:
    """The TeX Live packages behind paper/main.tex's \\usepackage lines."""
    used = re.findall(r"^\\usepackage(?:\[[^\]]*\])?\{([^}]+)\}", (REPO / "paper" / "main.tex").read_text(), re.M)
    names = [n.strip() for group in used for n in group.split(",")]
    return sorted({TEX_PACKAGE.get(n, n) for n in names} - {None})


def test_cpu_shell_has_the_python_packages_snakemake_and_the_papers_tex(evaluated):
    shells = evaluated["shells"]
    assert set(shells) == SYSTEMS
    for system in SYSTEMS:
        cpu = shells[system]["default"]
        assert set(python_attrs()) <= set(cpu["python"]), system
        assert "snakemake_executor_plugin_slurm" in cpu["python"]
        assert set(tex_packages()) | {"latexmk"} <= set(cpu["tex"])
        assert set(cpu["tex"]) - set(tex_packages()) - {"latexmk"} <= TEX_DEPENDENCIES
        assert {"em", "ruff", "git"} <= set(cpu["names"])
        assert cpu["config"] == {}
        assert "vllm" not in cpu["python"]


def test_gpu_shell_is_the_cuda_stack_on_linux(evaluated):
    shells = evaluated["shells"]
    assert {s for s in SYSTEMS if "gpu" in shells[s]} == {"x86_64-linux", "aarch64-linux"}
    gpu = shells["x86_64-linux"]["gpu"]
    assert gpu["config"] == {"allowUnfree": True, "cudaSupport": True}
    assert {"torch", "vllm", "bitsandbytes"} <= set(gpu["python"])
    assert set(python_attrs()) <= set(gpu["python"])


def test_app_runs_the_embedded_default(evaluated):
    for system in SYSTEMS:
        app = evaluated["apps"][system]
        assert app["type"] == "app" and app["program"].endswith("/bin/em-embedded-default")
    text = (REPO / "flake.nix").read_text()
    assert "exec snakemake --cores all" in text
