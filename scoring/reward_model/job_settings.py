"""The training settings an admin may choose per run (Retrain form, API, command line).

One table drives all three, so their names, defaults and bounds cannot drift apart. Values are
checked here (pure Python, no Django): :func:`parse_training_settings` turns submitted values
(strings from a form or the command line, JSON values from the API) into typed values or raises
:class:`SettingsError` naming each bad field. ``None``/empty means "use the default".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .training_types import (
    DEFAULT_TOKEN_BUDGET,
    STRATEGIES,
    TRAINING_PRECISIONS,
    TrainingConfig,
)

_DEFAULTS = TrainingConfig()
MAX_PROCESSES = 64


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "choice", "path", "int", "float" or "bool"
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name.replace("_", " ").capitalize()


TRAINING_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "mode",
        "choice",
        "head",
        "head: fit the reward head on frozen encoder vectors (seconds on a CPU); "
        "full: fine-tune every weight.",
        choices=("head", "full"),
    ),
    Setting(
        "base_model",
        "path",
        "",
        "A local model directory (holding config.json) on the training host; empty: "
        "ARBITER_BASE_MODEL, else the packaged all-MiniLM-L6-v2.",
    ),
    Setting("epochs", "float", _DEFAULTS.epochs, "Full mode: passes over the pairs.", 0.01, 100),
    Setting(
        "learning_rate",
        "float",
        _DEFAULTS.learning_rate,
        "Full mode: peak AdamW learning rate.",
        1e-9,
        1.0,
    ),
    Setting(
        "max_length",
        "int",
        None,
        "Token window; longer transcripts lose tokens on the left (empty: the model's window, "
        "at most 16,384).",
        8,
        131_072,
    ),
    Setting(
        "token_budget",
        "int",
        DEFAULT_TOKEN_BUDGET,
        "Full mode: real tokens per process and micro-batch (packed, no padding).",
        16,
        4_194_304,
    ),
    Setting(
        "gradient_checkpointing",
        "bool",
        False,
        "Full mode: recompute activations in the backward pass (long context in less memory).",
    ),
    Setting(
        "processes",
        "int",
        1,
        "Full mode: training processes on this host (one per GPU; on a CPU host, gloo, at most "
        "one per core).",
        1,
        MAX_PROCESSES,
    ),
    Setting(
        "strategy",
        "choice",
        _DEFAULTS.strategy,
        "Full mode: ddp keeps a whole model per process; fsdp shards weights, gradients and "
        "optimizer states over the processes (models that do not fit one GPU).",
        choices=STRATEGIES,
    ),
    Setting("liger", "bool", False, "Full mode: Liger fused kernels, where installed (CUDA)."),
    Setting(
        "precision",
        "choice",
        "auto",
        "Full mode: training arithmetic over float32 weights. auto: bf16 autocast on a bf16 "
        "GPU or a CPU with bf16 units (AMX or AVX-512 BF16), float32 elsewhere; bf16 or float32 "
        "forces one.",
        choices=TRAINING_PRECISIONS,
    ),
)
SETTINGS_BY_NAME = {setting.name: setting for setting in TRAINING_SETTINGS}


class SettingsError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(setting: Setting, value: Any) -> Any:
    if setting.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("must be true or false")
    if setting.kind in ("choice", "path"):
        text = str(value).strip()
        if setting.kind == "choice" and text not in setting.choices:
            raise ValueError(f"must be one of {', '.join(setting.choices)}")
        return text
    if isinstance(value, bool):
        raise ValueError("must be a number")
    try:
        number = int(str(value).strip()) if setting.kind == "int" else float(str(value).strip())
    except ValueError:
        kind = "a whole number" if setting.kind == "int" else "a number"
        raise ValueError(f"must be {kind}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    if setting.minimum is not None and number < setting.minimum:
        raise ValueError(f"must be at least {setting.minimum:g}")
    if setting.maximum is not None and number > setting.maximum:
        raise ValueError(f"must be at most {setting.maximum:g}")
    return number


def parse_training_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values for the settings given (absent, None or "" are left out)."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for setting in TRAINING_SETTINGS:
        value = values.get(setting.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        try:
            parsed[setting.name] = _coerce(setting, value)
        except ValueError as error:
            errors[setting.name] = str(error)
    if not errors and parsed.get("processes", 1) > 1 and parsed.get("mode", "head") != "full":
        errors["processes"] = "several processes train only in full mode"
    if not errors and parsed.get("strategy") == "fsdp" and parsed.get("mode", "head") != "full":
        errors["strategy"] = "fsdp trains only in full mode"
    if errors:
        raise SettingsError(errors)
    return parsed


def training_defaults() -> dict[str, Any]:
    return {setting.name: setting.default for setting in TRAINING_SETTINGS}
