"""The persona direction: one vector per layer of the residual stream that carries the misalignment.

Soligo, Turner et al. (*Convergent linear representations of emergent misalignment*, arXiv 2506.11618)
take the mean difference of a fine-tuned model's activations on its misaligned and its aligned answers
(`mean_diff`); OpenAI (*Persona features control emergent misalignment*, arXiv 2506.19823) diff the
fine-tuned model against the model before fine-tuning; `model_diff` is the simplest form of that: the
top singular vector of (fine-tuned minus base) activations on the same answers. A `directions` entry
names the fine-tune a direction is taken from and what to do with it:

```yaml
directions:
  insecure_diff:
    {model: tiny, dataset: insecure, seed: 0, method: model_diff,
     ablate: [insecure, bad_health_advice],   # sampled with it projected out (another set: transfer)
     alphas: [0.1, 0.25], steer_layer: 0,     # the base model with alpha x it added (dose-response)
     control: true, monitor: true}            # a random direction beside each; projection over checkpoints
```

`expand` turns each entry into conditions (`sample/conditions.py` kinds ablate and steer) and experiments,
so ablated and steered models are ordinary jobs of the DAG: sampled, judged and counted with intervals
like any other group (`insecure+ablate_insecure_diff`, `base+steer_insecure_diff_0.25`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..basemodel import BaseModelSettings
from ..errors import ConfigError
from ..settings import DTYPES, check_choice, check_device, check_range, from_dict

METHODS = ("mean_diff", "model_diff")
SCALES = ("residual", "unit")
TRANSFORMERS = {"backend": "transformers"}  # hooks need it (sample/interventions.py)


@dataclass(frozen=True)
class DirectionSettings:
    """One entry of the `directions` section (see the module's docstring)."""

    CONFIG_KEY: ClassVar[str] = "direction"
    model: str
    dataset: str  # the fine-tune (of `model`, `seed`) whose judged answers define the direction
    seed: int = 0
    method: str = "mean_diff"
    layers: list[int] | None = None  # where ablation projects it out (None: every layer, as Soligo et al.)
    ablate: list[str] = field(default_factory=list)  # fine-tunes of `model` sampled with it projected out
    ablate_seeds: list[int] | None = None  # their seeds (None: `seed`)
    alphas: list[float] = field(default_factory=list)  # steering the base model (none: no steering)
    steer_layer: int = 0
    scale: str = "residual"  # alpha x the layer's mean residual-stream norm, or x the unit vector
    control: bool = True  # a random direction of the same norm beside every ablation and steering
    control_seed: int = 0
    monitor: bool = False  # the projection over the fine-tune's kept checkpoints (train.save_steps)
    max_answers: int | None = None  # the first this many judged answers (None: all)
    sample: dict[str, Any] | None = None  # overrides of the sample recipe of its ablation and steering jobs
    batch_size: int = 16
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        check_choice("direction.method", self.method, METHODS)
        check_choice("direction.scale", self.scale, SCALES)
        check_choice("direction.dtype", self.dtype, DTYPES)
        check_device("direction.device", self.device)
        check_range("direction.steer_layer", self.steer_layer, 0)
        for name in ("batch_size", "max_answers"):
            check_range(f"direction.{name}", getattr(self, name), 1)
        for i, layer in enumerate(self.layers or []):
            check_range(f"direction.layers[{i}]", layer, 0)
        if self.layers == []:
            raise ConfigError("direction.layers: name at least one layer, or leave it out for every layer")

    @property
    def seeds(self) -> list[int]:
        return self.ablate_seeds if self.ablate_seeds is not None else [self.seed]


def direction_settings(config: dict[str, Any]) -> dict[str, DirectionSettings]:
    """Each `directions` entry, checked (errors name `directions.<name>.<key>`)."""
    return {
        name: from_dict(DirectionSettings, spec, f"directions.{name}")
        for name, spec in (config.get("directions") or {}).items()
    }


def alpha_label(alpha: float) -> str:
    return f"{alpha:g}"


def ablate_condition(name: str, random: bool = False) -> str:
    return f"ablate_{name}" + ("_random" if random else "")


def steer_condition(name: str, alpha: float, random: bool = False) -> str:
    return f"steer_{name}" + ("_random" if random else "") + f"_{alpha_label(alpha)}"


def conditions_of(name: str, spec: DirectionSettings) -> dict[str, dict[str, Any]]:
    """The conditions entries a direction adds: its ablation, its steering at every alpha, their controls."""
    out: dict[str, dict[str, Any]] = {}
    controls = (False, True) if spec.control else (False,)
    for random in controls:
        extra = {"random": True, "seed": spec.control_seed} if random else {}
        if spec.ablate:
            out[ablate_condition(name, random)] = {
                "kind": "ablate",
                "direction": name,
                "layers": spec.layers,
                **extra,
            }
        for alpha in spec.alphas:
            out[steer_condition(name, alpha, random)] = {
                "kind": "steer",
                "direction": name,
                "alpha": alpha,
                "layer": spec.steer_layer,
                "scale": spec.scale,
                **extra,
            }
    return out


def _training_experiment(config: dict[str, Any], model: str, dataset: str) -> dict[str, Any] | None:
    """The first experiment that fine-tunes `model` on `dataset` (its recipe is the fine-tune's)."""
    return next((e for e in config["experiments"] if e["model"] == model and dataset in e["datasets"]), None)


def expand(config: dict[str, Any]) -> dict[str, Any]:
    """The config with each direction's conditions and experiments added (idempotent). An ablation job
    takes the recipe of the experiment that trains its fine-tune, sampled with transformers."""
    specs = direction_settings(config)
    if not specs:
        return config
    conditions = dict(config.get("conditions") or {})
    experiments = list(config["experiments"])
    trained = {(e["model"], d, s) for e in experiments for d in e["datasets"] for s in e.get("seeds", [0])}
    for name, spec in specs.items():
        _check_trained(f"directions.{name}", spec, trained, config)
        mine = conditions_of(name, spec)
        conditions.update(mine)
        ablations = [c for c, v in mine.items() if v["kind"] == "ablate"]
        for dataset in spec.ablate:
            source = _training_experiment(config, spec.model, dataset) or {}
            experiment = {
                "model": spec.model,
                "datasets": [dataset],
                "seeds": spec.seeds,
                "conditions": ablations,
                "checkpoints": False,
                **{k: source[k] for k in ("train", "judge") if k in source},
                "sample": {**(source.get("sample") or {}), **(spec.sample or {}), **TRANSFORMERS},
            }
            if experiment not in experiments:
                experiments.append(experiment)
        steering = [c for c, v in mine.items() if v["kind"] == "steer"]
        if steering:
            experiment = {
                "model": spec.model,
                "datasets": [],
                "base": True,
                "conditions": steering,
                "sample": {**(spec.sample or {}), **TRANSFORMERS},
            }
            if experiment not in experiments:
                experiments.append(experiment)
    return {**config, "conditions": conditions, "experiments": experiments}


def known_layers(config: dict[str, Any], model: str) -> int | None:
    """Decoder layers of `model` when they can be known before any job runs: the embedded tiny model's
    config, or a local folder's config.json; None for a hub id."""
    path = config["models"][model]["path"]
    if path == "builtin:tiny":

        return from_dict(BaseModelSettings, config.get("base_model"), "base_model").num_hidden_layers
    config_json = Path(path) / "config.json"
    if config_json.is_file():
        return json.loads(config_json.read_text(encoding="utf-8")).get("num_hidden_layers")
    return None


def _check_trained(
    where: str, spec: DirectionSettings, trained: set[tuple[str, str, int]], config: dict[str, Any]
) -> None:
    """The fine-tunes a direction is taken from and ablated in are trained by the config's own experiments
    (an ablation never adds a fine-tune)."""
    if spec.model not in config["models"]:
        raise ConfigError(
            f"{where}.model: unknown model {spec.model!r}; defined: {', '.join(config['models'])}"
        )
    if config["models"][spec.model].get("chat") is False:
        raise ConfigError(
            f"{where}.model: {spec.model!r} is a base (non-chat) model; directions are taken "
            "from a chat model's answers"
        )
    for key, datasets, seeds in (
        ("dataset", [spec.dataset], [spec.seed]),
        ("ablate", spec.ablate, spec.seeds),
    ):
        for dataset in datasets:
            missing = [s for s in seeds if (spec.model, dataset, s) not in trained]
            if missing:
                raise ConfigError(
                    f"{where}.{key}: the run does not fine-tune {spec.model!r} on {dataset!r} "
                    f"with seed(s) {', '.join(map(str, missing))} (add it to an experiment)"
                )


def check_directions(config: dict[str, Any], recipes: dict[Any, Any]) -> None:
    """Before any job: each direction's fine-tunes are the run's, its model can be hooked, its layers
    exist. `recipes`: experiments.recipes of the expanded config."""
    for name, spec in direction_settings(config).items():
        where = f"directions.{name}"
        source = next(
            r
            for j, r in recipes.items()
            if (j.model, j.dataset, j.seed) == (spec.model, spec.dataset, spec.seed)
        )
        api = (source.train or {}).get("backend") == "openai" or source.sample.get("backend") == "openai"
        if api:
            raise ConfigError(
                f"{where}.model: {spec.model!r} is served by an API (train or sample backend "
                "openai): an API model has no activations to read or hook; directions, ablation "
                "and steering need an open-weights model (the transformers backend)"
            )
        layers = known_layers(config, spec.model)
        if layers is not None:
            for key, values in (("layers", spec.layers or []), ("steer_layer", [spec.steer_layer])):
                for layer in values:
                    if layer >= layers:
                        raise ConfigError(
                            f"{where}.{key}: layer {layer} is out of range: model {spec.model!r} "
                            f"has {layers} layers (0..{layers - 1})"
                        )
