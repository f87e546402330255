"""Checks a composed config before anything is built, so a bad override fails in a second with one line.

Hydra already rejects unknown groups, options and misspelt keys (configs are in struct mode); this
module checks values: ranges, allowed choices, and that data and networks agree on the image shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, ListConfig, MissingMandatoryValue, OmegaConf

from gan.choices import G_LOSSES, NOISE_DISTRIBUTIONS, SCALINGS, UPDATE_SCHEMES
from gan.errors import ConfigError

Check = Callable[[Any], bool]
MISSING = object()


def _int_at_least(low: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _unit_interval_open_right(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1


def _one_of(choices) -> Check:
    return lambda v: v in choices


def _shape(v: Any) -> bool:
    return isinstance(v, (list, tuple, ListConfig)) and len(v) > 0 and all(_int_at_least(1)(d) for d in v)


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


# key -> (check, what is allowed, an example of a good value)
RULES: dict[str, tuple[Check, str, str]] = {
    # Every run is seeded: the data order, the per-step noise and the Parzen samples all derive from it.
    "seed": (_int_at_least(0), "a non-negative integer", "1234"),
    "model.k": (_int_at_least(1), "an integer >= 1", "1"),
    "model.update_scheme": (_one_of(UPDATE_SCHEMES), "one of " + ", ".join(UPDATE_SCHEMES), "simultaneous"),
    "model.objective.g_loss": (_one_of(G_LOSSES), "one of " + ", ".join(G_LOSSES), "non_saturating"),
    "model.objective.r1_gamma": (lambda v: _positive_number(v) or v == 0, "a number >= 0 (0: no R1)", "10"),
    "model.objective.r1_interval": (_int_at_least(1), "an integer >= 1", "16"),
    "model.objective.gp_lambda": (lambda v: _positive_number(v) or v == 0, "a number >= 0", "10"),
    "model.noise.dim": (_int_at_least(1), "an integer >= 1", "100"),
    "model.noise.distribution": (_one_of(NOISE_DISTRIBUTIONS), "one of " + ", ".join(NOISE_DISTRIBUTIONS), "uniform"),
    "model.g_optimizer.lr": (_positive_number, "a number > 0", "0.1"),
    "model.d_optimizer.lr": (_positive_number, "a number > 0", "0.1"),
    "model.g_optimizer.momentum": (_unit_interval_open_right, "a number in [0, 1)", "0.5"),
    "model.d_optimizer.momentum": (_unit_interval_open_right, "a number in [0, 1)", "0.5"),
    "model.g_scheduler.momentum_start": (_unit_interval_open_right, "a number in [0, 1)", "0.5"),
    "model.g_scheduler.momentum_end": (_unit_interval_open_right, "a number in [0, 1)", "0.7"),
    "model.d_scheduler.momentum_start": (_unit_interval_open_right, "a number in [0, 1)", "0.5"),
    "model.d_scheduler.momentum_end": (_unit_interval_open_right, "a number in [0, 1)", "0.7"),
    "model.g_scheduler.decay_factor": (lambda v: _positive_number(v) and v >= 1, "a number >= 1", "1.000004"),
    "model.d_scheduler.decay_factor": (lambda v: _positive_number(v) and v >= 1, "a number >= 1", "1.000004"),
    **{f"model.{net}_scheduler.anneal_start_epoch": (_optional(_int_at_least(0)), "null or an integer >= 0", "600")
       for net in "gd"},
    **{f"model.{net}_scheduler.anneal_epochs": (_int_at_least(1), "an integer >= 1", "100") for net in "gd"},
    "model.ema_decay": (_optional(lambda v: _positive_number(v) and v < 1), "null or a number in (0, 1)", "0.999"),
    "use_ema": (lambda v: isinstance(v, bool), "true or false", "true"),
    "model.compile": (lambda v: isinstance(v, bool), "true or false", "false"),
    "model.cuda_graph": (lambda v: isinstance(v, bool), "true or false", "false"),
    "data.batch_size": (_int_at_least(1), "an integer >= 1", "100"),
    "data.eval_batch_size": (_int_at_least(1), "an integer >= 1", "1000"),
    "data.scaling": (_one_of(SCALINGS), "one of " + ", ".join(SCALINGS), "unit"),
    "data.shape": (_shape, "a list of positive integers", "[1,28,28]"),
    "data.num_workers": (_int_at_least(0), "an integer >= 0", "0"),
    "data.val_size": (_int_at_least(1), "an integer >= 1", "10000"),
    "data.gcn_scale": (_positive_number, "a number > 0", "55"),
    "data.fold": (_one_of(range(5)), "one of 0, 1, 2, 3, 4", "0"),
    # data=image_folder (a missing data.path is reported by _value: "set it on the command line")
    "data.path": (lambda v: isinstance(v, str) and v.strip() != "", "a folder of images", "/path/to/images"),
    "data.image_size": (_int_at_least(1), "an integer >= 1", "64"),
    "data.channels": (_one_of((1, 3)), "1 (grey) or 3 (RGB)", "3"),
    **{f"data.{key}": (lambda v: _unit_interval_open_right(v) and v > 0, "a number in (0, 1)", "0.05")
       for key in ("val_fraction", "test_fraction")},
    "data.train_sample_size": (_int_at_least(1), "an integer >= 1", "10000"),
    **{f"data.{key}": (lambda v: isinstance(v, bool), "true or false", "true") for key in ("resize", "hflip")},
    "trainer.max_epochs": (_optional(_int_at_least(-1)), "an integer >= -1 (-1: no limit)", "100"),
    "trainer.devices": (lambda v: v == "auto" or _int_at_least(1)(v) or isinstance(v, (list, ListConfig)),
                        "an integer >= 1, a list of device ids, or auto", "1"),
    "trainer.num_nodes": (_int_at_least(1), "an integer >= 1", "1"),
    **{f"callbacks.parzen.{name}": (_int_at_least(1), "an integer >= 1", example) for name, example in (
        ("val_samples", "10000"), ("select_points", "1000"), ("test_samples", "10000"), ("sample_batch_size", "1000"))},
    # intervals: 0 would divide by zero at the first epoch end (to switch a callback off, remove it: ~callbacks.<name>)
    **{f"callbacks.{key}": (_int_at_least(1), "an integer >= 1 (to switch it off: ~callbacks." + key.split(".")[0] + ")", "5")
       for key in ("sample_grid.every_n_epochs", "figures.every_n_epochs", "quality.every_n_epochs",
                   "snapshots.every_n_epochs", "divergence_guard.check_every_n_steps")},
    "callbacks.parzen.val_points": (_optional(_int_at_least(1)),
                                    "null (the validation images after select_points) or an integer >= 1", "1000"),
    "callbacks.parzen.test_points": (_optional(_int_at_least(1)), "null (the whole test set) or an integer >= 1", "null"),
    "callbacks.parzen.test_select_points": (_optional(_int_at_least(1)),
                                            "null (the whole validation split) or an integer >= 1", "1000"),
    "callbacks.parzen.sigmas": (lambda v: isinstance(v, (list, ListConfig)) and len(v) > 0 and all(_positive_number(s) for s in v),
                                "a non-empty list of numbers > 0", "[0.1,0.2]"),
}


# Keys that moved: the old spelling gets one line naming the new one (Hydra would only say the key is unknown).
RENAMED_KEYS = {"model.g_loss": "model.objective.g_loss"}


def refuse_renamed_keys(overrides: list[str]) -> None:
    """Raise ConfigError for a command-line override of a key that has moved."""
    for override in overrides:
        key, _, value = override.lstrip("~+").partition("=")
        if key in RENAMED_KEYS:
            raise ConfigError(f"{key} is now {RENAMED_KEYS[key]} (the objective is a config group, "
                              f"model/objective=gan2014|hinge|least_squares|wasserstein_gp). Fix: "
                              f"{RENAMED_KEYS[key]}={value}")


def _value(cfg: DictConfig, key: str, example: str = "...") -> Any:
    try:
        value = OmegaConf.select(cfg, key, default=MISSING, throw_on_missing=True)
    except MissingMandatoryValue:  # a ??? value
        raise ConfigError(f"{key} is not set; set it on the command line, e.g. {key}={example}") from None
    except Exception as error:  # an interpolation that cannot resolve
        raise ConfigError(f"{key} cannot be resolved ({str(error).splitlines()[0]}); set it on the command line, "
                          f"e.g. {key}={example}") from None
    if isinstance(value, (DictConfig, ListConfig)):
        return value if isinstance(value, ListConfig) else MISSING
    return value


def _owned_by_a_user_class(cfg: DictConfig, key: str) -> bool:
    """The rules describe the project's own classes (and torch's optimizers); the arguments of a user's `_target_`
    are that class's to check (a bad one fails in one line when it is built, see gan.utils.instantiate)."""
    target = _value(cfg, key.rpartition(".")[0] + "._target_") if "." in key else MISSING
    return isinstance(target, str) and not target.startswith(("gan.", "torch.", "lightning."))


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError (one line: key, bad value, what is allowed) for the first invalid value."""
    for key, (check, allowed, example) in RULES.items():
        value = _value(cfg, key, example)
        if value is MISSING or _owned_by_a_user_class(cfg, key):
            continue
        if not check(value):
            shown = list(value) if isinstance(value, ListConfig) else value
            raise ConfigError(f"{key}={shown!r} is invalid: must be {allowed} (e.g. {key}={example})")
    _check_shapes(cfg)
    _check_output_range(cfg)
    _check_cuda_graph(cfg)


def _check_shapes(cfg: DictConfig) -> None:
    data_shape = _value(cfg, "data.shape")
    if data_shape is MISSING:
        return
    data_shape = list(data_shape)
    for key in ("model.generator.out_shape", "model.discriminator.in_shape"):
        shape = _value(cfg, key)
        if shape is not MISSING and list(shape) != data_shape:
            raise ConfigError(
                f"{key}={list(shape)} does not match data.shape={data_shape}; networks and data must agree "
                f"(remove the override of {key}, or {_data_with_shape(cfg, list(shape))})"
            )
    made = _fixed_generator_size(cfg)
    if made is not None and made != data_shape[1:]:
        raise ConfigError(
            f"the generator (model.generator._target_={_value(cfg, 'model.generator._target_')}) makes "
            f"{made[0]}x{made[1]} images, but data.shape={data_shape}; networks and data must agree "
            f"({_data_with_shape(cfg, data_shape[:1] + made)}, or use a generator sized from the data)"
        )


def _data_with_shape(cfg: DictConfig, shape: list) -> str:
    """How to get data of `shape`: for data=image_folder its own keys, otherwise another data config."""
    if _value(cfg, "data.image_size") is not MISSING and len(shape) == 3 and shape[1] == shape[2]:
        return f"add data.channels={shape[0]} data.image_size={shape[1]}"
    return "pick a data config with that shape"


def _fixed_generator_size(cfg: DictConfig) -> list[int] | None:
    """[H, W] of a generator whose output size its layers fix (the paper's transposed-conv G), else None."""
    if not str(_value(cfg, "model.generator._target_")).endswith("ConvTransposeGenerator"):
        return None
    feature, kernel, stride = (_value(cfg, f"model.generator.{k}") for k in ("feature_shape", "kernel_size", "stride"))
    if any(value is MISSING for value in (feature, kernel, stride)):
        return None
    side = (int(feature[1]) - 1) * int(stride) + int(kernel)
    return [side, (int(feature[2]) - 1) * int(stride) + int(kernel)]


# A bounded generator output must cover the range the data was scaled to (a Tanh G on [0, 1] data trains, but
# against the wrong target: the bug of Lightning's GAN example). Linear outputs fit any scaling.
OUTPUT_RANGES = {"sigmoid": ("unit", "[0, 1]"), "tanh": ("symmetric", "[-1, 1]")}


def _check_output_range(cfg: DictConfig) -> None:
    target, scaling = _value(cfg, "model.generator._target_"), _value(cfg, "data.scaling")
    if target is MISSING or scaling is MISSING or _owned_by_a_user_class(cfg, "data.scaling"):
        return
    activation = "tanh" if str(target).endswith("PyTorchGANGenerator") else _value(cfg, "model.generator.output_activation")
    if activation in OUTPUT_RANGES and OUTPUT_RANGES[activation][0] != scaling:
        wanted, bounds = OUTPUT_RANGES[activation]
        raise ConfigError(
            f"the generator's {activation} output lies in {bounds} but data.scaling={scaling} does not; networks and "
            f"data must agree (add data.scaling={wanted}, or use a generator whose output fits {scaling} data)"
        )


def _check_cuda_graph(cfg: DictConfig) -> None:
    """What a captured step cannot do yet; the GPU and the optimizers are checked when the run starts."""
    if _value(cfg, "model.cuda_graph") is not True:
        return
    clashes = ["model.compile=true"] if _value(cfg, "model.compile") is True else []
    precision = _value(cfg, "trainer.precision")
    if precision is not MISSING and str(precision) not in ("32-true", "32"):
        clashes.append(f"trainer.precision={precision}")
    if clashes:
        raise ConfigError(f"model.cuda_graph=true runs fp32 eager kernels only, not with {', '.join(clashes)}. "
                          "Fix: drop those overrides, or model.cuda_graph=false")
