"""FIT.json: writing a fit and reading it back, every field checked.

Why not a JSON Schema validator (`jsonschema`): it would be a runtime dependency beyond jax and
numpy for five numbers and a few lists, and its messages name schema paths rather than saying
what a field must be; the hand-written check names the field and the rule it breaks.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .._laws import Chinchilla
from .._table import atomic_write
from ._forms import COEFFICIENTS
from ._result import LawFit
from ._uncertainty import laws_from_coefficients


# ======================================================================================= JSON
def write_fit_json(
    fit_result: LawFit, path: str | os.PathLike, *, include_bootstrap: bool = True
) -> None:
    """Write a fit to FIT.json, atomically (a temporary file in the same folder, then rename).

    Keys: the point estimates `E`, `A`, `B`, `alpha`, `beta`; `standard_errors` and `ci95`
    (bootstrap standard deviations and percentile 95% intervals `[low, high]`, keyed the same;
    `null` without a bootstrap); `n_runs`, `dropped` (input row indices left out),
    `huber_delta`, `n_starts`, `n_bootstrap`, `objective` (summed Huber loss), `grad_norm`,
    `converged`, `bootstrap_converged` (fraction of resamples), `fitted_range` (the smallest
    and largest `n_params` and `n_tokens` of the runs used, `[low, high]` each) and, unless
    `include_bootstrap=False`, `bootstrap`: the resampled coefficients as lists keyed by name.
    """
    record = fit_result.to_record(include_bootstrap=include_bootstrap)
    _validate_fit_record(record, "fit")

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")

    atomic_write(path, write)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _validate_fit_record(record: Any, where: str) -> None:
    def fail(field: str, msg: str):
        raise ValueError(f"{where}: field {field!r} {msg}")

    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for name in COEFFICIENTS:
        if name not in record:
            fail(name, "is missing")
        v = record[name]
        if not (_is_number(v) and math.isfinite(v) and v > 0):
            fail(name, f"must be a finite number > 0, got {v!r}")
    for name in ("n_runs", "n_starts"):
        if name not in record:
            fail(name, "is missing")
        if not (_is_int(record[name]) and record[name] >= 1):
            fail(name, f"must be an integer >= 1, got {record[name]!r}")
    if "n_bootstrap" not in record:
        fail("n_bootstrap", "is missing")
    n_boot = record["n_bootstrap"]
    if not (_is_int(n_boot) and (n_boot == 0 or n_boot >= 2)):
        fail("n_bootstrap", f"must be 0 or an integer >= 2, got {n_boot!r}")
    for name, low in (("huber_delta", 0.0), ("objective", None)):
        if name not in record:
            fail(name, "is missing")
        v = record[name]
        ok = _is_number(v) and math.isfinite(v) and (v > low if low is not None else v >= 0)
        if not ok:
            fail(name, f"must be a finite number {'> 0' if low is not None else '>= 0'}, got {v!r}")
    if record.get("fitted_range") is not None:  # absent from files of earlier versions
        ranges = record["fitted_range"]
        if not isinstance(ranges, dict):
            fail("fitted_range", "must be an object keyed by n_params and n_tokens")
        for k in ("n_params", "n_tokens"):
            v = ranges.get(k)
            if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)
                    and 0 < v[0] <= v[1] and math.isfinite(v[1])):
                fail(f"fitted_range.{k}", f"must be [low, high] with 0 < low <= high, got {v!r}")
    if "dropped" not in record:
        fail("dropped", "is missing")
    dropped = record["dropped"]
    if not (isinstance(dropped, list) and all(_is_int(i) and i >= 0 for i in dropped)):
        fail("dropped", f"must be a list of row indices >= 0, got {dropped!r}")
    for name in ("standard_errors", "ci95"):
        if name not in record:
            fail(name, "is missing")
        value = record[name]
        if n_boot == 0:
            if value is not None:
                fail(name, "must be null when n_bootstrap is 0")
            continue
        if not isinstance(value, dict):
            fail(name, f"must be an object keyed by {', '.join(COEFFICIENTS)}")
        for k in COEFFICIENTS:
            if k not in value:
                fail(f"{name}.{k}", "is missing")
            v = value[k]
            if name == "standard_errors":
                if not (_is_number(v) and math.isfinite(v) and v >= 0):
                    fail(f"{name}.{k}", f"must be a finite number >= 0, got {v!r}")
            else:
                if not (
                    isinstance(v, list)
                    and len(v) == 2
                    and all(_is_number(x) and math.isfinite(x) for x in v)
                    and v[0] <= v[1]
                ):
                    fail(f"{name}.{k}", f"must be [low, high] with finite low <= high, got {v!r}")
    if record.get("bootstrap") is not None:
        try:
            laws_from_coefficients(record["bootstrap"])
        except ValueError as e:
            fail("bootstrap", f"is invalid: {e}")


def _load_fit_record(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    _validate_fit_record(record, str(path))
    return record


def read_fit_json(path: str | os.PathLike) -> Chinchilla:
    """The point-estimate `Chinchilla` law of a FIT.json, after validating every field.

    Raises `ValueError` naming the first field that is missing or out of range.
    """
    record = _load_fit_record(path)
    return Chinchilla(**{k: float(record[k]) for k in COEFFICIENTS})


def read_fit_bootstrap(path: str | os.PathLike) -> Chinchilla:
    """The bootstrap laws of a FIT.json as one batched `Chinchilla` (fields of shape `(n,)`).

    Accepts `bootstrap` as an object of lists keyed by coefficient name or as a list of objects.
    Raises `ValueError` if the file has no bootstrap samples or any field is invalid.
    """
    record = _load_fit_record(path)
    if record.get("bootstrap") is None:
        raise ValueError(f"{path}: field 'bootstrap' is missing (fit with bootstrap samples kept)")
    return laws_from_coefficients(record["bootstrap"])
