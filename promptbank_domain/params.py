"""One row of the hyperparameter table: a `TrainConfig` field's range, help, CLI flag and place on the wire.

Each field of `TrainConfig` carries its `Param` in `dataclasses.field(metadata=...)`; validation, the
coordinator's wire mapping, the CLI's `train` flags and the docs table are all read from there
(`promptbank_domain.train_config.PARAMS`), so a hyperparameter is declared once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

KEY = "promptbank.param"
# Where a field travels in a CreateTrainJob request:
#   "optional": an optional scalar of the same name in `Hyperparameters` (unset = the kind's default);
#   "text":     a string of the same name in `Hyperparameters` ("" = the default);
#   "kind":     the `PromptKind` enum `Hyperparameters.prompt_kind`;
#   "dataset":  an optional scalar of the same name in `Dataset` (it says how the rows are split);
#   "":         not on the wire (set by the server or fixed).
Wire = Literal["optional", "text", "kind", "dataset", ""]


def show(value: object) -> str:
    """A value as the help and the docs print it: 1e6, not 1e+06."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}".replace("e+0", "e").replace("e+", "e")
    return str(value)


@dataclass(frozen=True)
class Param:
    """What one hyperparameter is, beyond its name, type and default (which the dataclass field holds)."""

    setting: str  # the docs table's name for it ("" = internal: not documented)
    help: str  # what it does, one clause (the CLI help and the docs)
    wire: Wire = "optional"
    flag: str = ""  # the `promptbank train` flag ("" = none)
    low: float | None = None  # the range: low..high, each end closed unless open_*; None = unbounded
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    # the values a string field takes (empty: any, checked elsewhere); a function where they are registered at
    # run time (the prompt kinds: promptbank_domain.kinds.names)
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] = ()
    note: str = ""  # said after the range ("0 = off")
    zero_unset: bool = False  # on the wire 0 is no value: a set value must be >= 1, and 0 echoes as unset
    default_note: str = ""  # the default, where a number does not say it (e.g. it depends on the backbone)
    metavar: str = ""

    @property
    def options(self) -> tuple[str, ...]:
        """The values a string field takes now (empty: any)."""
        return self.choices() if callable(self.choices) else self.choices

    @property
    def dest(self) -> str:
        """The argparse destination of `flag`."""
        return self.flag.removeprefix("--").replace("-", "_")

    def holds(self, value: Any) -> bool:
        """Whether `value` is in range (NaN never is)."""
        if self.choices:
            return value in self.options
        lo_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        hi_ok = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return bool(lo_ok and hi_ok)

    def rule(self, integer: bool, note: bool = True) -> str:
        """The range in words, as error messages give it ("" where there is none); `note` adds the note."""
        if self.choices:
            text = f"one of {list(self.options)}"
        elif self.low is None and self.high is None:
            return ""
        elif self.high is None:
            text = f"{'>' if self.open_low else '>='} {show(self.low)}"
        elif integer and not (self.open_low or self.open_high):
            text = f"between {show(self.low)} and {show(self.high)}"
        else:
            text = (f"in {'(' if self.open_low else '['}{show(self.low)}, {show(self.high)}"
                    f"{')' if self.open_high else ']'}")
        return f"{text} ({self.note})" if self.note and note else text


def param(default: Any, **meta: Any) -> Any:
    """A dataclass field with its default and its `Param` row."""
    return field(default=default, metadata={KEY: Param(**meta)})
