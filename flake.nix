{
  description = "Emergent Misalignment, reproduced: CPU and GPU shells for the Snakemake workflow and the paper";

  # nixpkgs is locked in flake.lock to nixos-unstable at 0ae2bc1419c3f345984c2629e72e7a631820fa4d
  # (2026-08-18), with the narHash that Jovian-Experiments/Jovian-NixOS locks in its flake.lock
  # (commit 1b6a1c5b57e92b7e8b90b73c3d70b679bf00e43f). See docs/scale-out.md.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      lib = nixpkgs.lib;
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      gpuSystems = [ "x86_64-linux" "aarch64-linux" ];
      forSystems = names: f: lib.genAttrs names f;

      # CPU: the packages cache.nixos.org serves. GPU: CUDA builds (unfree; served by the
      # nix-community and Flox caches, see docs/scale-out.md).
      cpuPkgs = system: import nixpkgs { inherit system; };
      gpuPkgs = system: import nixpkgs {
        inherit system;
        config = { allowUnfree = true; cudaSupport = true; };
      };

      # SLURM executor for Snakemake; not in nixpkgs. Hashes are the PyPI sdists' sha256.
      slurmPlugins = ps: rec {
        jobstep = ps.buildPythonPackage rec {
          pname = "snakemake_executor_plugin_slurm_jobstep";
          version = "0.6.1";
          pyproject = true;
          src = ps.fetchPypi {
            inherit pname version;
            hash = "sha256-DtL+qojR1k813Ga0mQ8THT8VFzPt7OkNXpUt7A6Pf+s=";
          };
          build-system = [ ps.poetry-core ];
          dependencies = [ ps.snakemake-interface-common ps.snakemake-interface-executor-plugins ];
          pythonRelaxDeps = true;
          doCheck = false;
        };
        slurm = ps.buildPythonPackage rec {
          pname = "snakemake_executor_plugin_slurm";
          version = "2.8.0";
          pyproject = true;
          src = ps.fetchPypi {
            inherit pname version;
            hash = "sha256-l9kxKEsUUranr9LxttIALCeM56Xo9qmC3HdoiBfTA5k=";
          };
          build-system = [ ps.hatchling ];
          dependencies = [
            jobstep ps.numpy ps.pandas ps.pyyaml ps.throttler
            ps.snakemake-interface-common ps.snakemake-interface-executor-plugins
          ];
          pythonRelaxDeps = true;
          doCheck = false;
        };
      };

      # inspect_evals (Table 1's evals); not in nixpkgs. Hash: the PyPI wheel's sha256.
      inspectEvals = ps: ps.buildPythonPackage rec {
        pname = "inspect_evals";
        version = "0.26.0";
        format = "wheel";
        src = ps.fetchPypi {
          inherit pname version format;
          dist = "py3";
          python = "py3";
          hash = "sha256-t20VgTGCgH2hQaDwa7bxil+C0fBikewmM7uEzfZh+NA=";
        };
        dependencies = [ ps.inspect-ai ps.datasets ps.huggingface-hub ps.pandas ps.numpy ps.pyyaml ];
        pythonRelaxDeps = true;
        doCheck = false;
      };

      # The direct dependencies of pyproject.toml (versions: those of the locked nixpkgs,
      # not requirements.txt's pins), Snakemake in the same interpreter (the Snakefile imports
      # the package), pytest for the tests.
      pythonPackages = pkgs: ps:
        let plugins = slurmPlugins ps;
        in [
          ps.torch ps.transformers ps.peft ps.trl ps.accelerate ps.datasets ps.tokenizers
          ps.numpy ps.scipy ps.pandas ps.matplotlib ps.seaborn ps.pyyaml ps.jsonschema ps.openai
          ps.inspect-ai (inspectEvals ps)
          ps.pytest
          (ps.toPythonModule (pkgs.snakemake.override { python3Packages = ps; }))
          plugins.slurm
        ];

      # The default interpreter: Hydra builds its package set, so nothing compiles locally.
      pythonFor = pkgs: extra: pkgs.python3.withPackages (ps: pythonPackages pkgs ps ++ extra ps);

      # The LaTeX packages of paper/main.tex (tests/test_nix.py keeps the two in step), then what
      # fvextra loads.
      texFor = pkgs: pkgs.texliveBasic.withPackages (ps: [
        ps.latexmk ps.lm ps.geometry ps.microtype ps.amsmath ps.booktabs ps.tools ps.graphics ps.xcolor
        ps.fvextra ps.hyperref
        ps.fancyvrb ps.etoolbox ps.lineno ps.upquote ps.xstring ps.pdftexcmds
      ]);

      # `em` runs the package from the checkout's src/ (the package finds workflow/ beside it).
      emFor = pkgs: python: pkgs.writeShellScriptBin "em" ''
        exec ${python}/bin/python -m emergent_misalignment.cli "$@"
      '';

      shellFor = pkgs: python: pkgs.mkShell {
        packages = [ python (texFor pkgs) (emFor pkgs python) pkgs.ruff pkgs.git ];
        shellHook = ''
          export PYTHONPATH="$(git rev-parse --show-toplevel 2>/dev/null || pwd)/src''${PYTHONPATH:+:$PYTHONPATH}"
        '';
      };
    in
    {
      devShells =
        lib.recursiveUpdate
          (forSystems systems (system:
            let pkgs = cpuPkgs system;
            in { default = shellFor pkgs (pythonFor pkgs (_: [ ])); }))
          (forSystems gpuSystems (system:
            let pkgs = gpuPkgs system;
            in { gpu = shellFor pkgs (pythonFor pkgs (ps: [ ps.vllm ps.bitsandbytes ])); }));

      # `nix run` in a clone: the embedded default (config/config.yaml) on all cores.
      apps = forSystems systems (system:
        let
          pkgs = cpuPkgs system;
          python = pythonFor pkgs (_: [ ]);
          run = pkgs.writeShellApplication {
            name = "em-embedded-default";
            runtimeInputs = [ python (texFor pkgs) (emFor pkgs python) pkgs.git ];
            text = ''
              root=$(git rev-parse --show-toplevel 2>/dev/null || pwd)
              if [ ! -f "$root/Snakefile" ]; then
                echo "run this inside a clone of the repository (no Snakefile in $root)" >&2
                exit 1
              fi
              cd "$root"
              export PYTHONPATH="$root/src''${PYTHONPATH:+:$PYTHONPATH}"
              exec snakemake --cores all "$@"
            '';
          };
        in { default = { type = "app"; program = "${run}/bin/em-embedded-default"; }; });
    };
}
