"""Vital signs: what each one is (LOINC, UCUM), what is plausible, and FHIR Observations.

Pure rules, no I/O: the desktop entry form and the server both call `check_vitals`,
so a value the nurse's screen refuses is refused the same way everywhere. The
messages say what is wrong and what to type instead, in words a nurse reads in two
seconds; they never repeat the patient's other data.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared_models.fhir_constants import LOINC, OBSERVATION_CATEGORY, UCUM

BP_PANEL_LOINC = "85354-9"
_VITAL_SIGNS_CATEGORY = {
    "system": OBSERVATION_CATEGORY,
    "code": "vital-signs",
    "display": "Vital Signs",
}


@dataclass(frozen=True)
class VitalSign:
    """One measurable vital sign and its accepted range.

    `low`/`high` are physiological limits: outside them the value is a typing
    error or a device fault, not a sick patient (SpO2 60 % is alarming but real;
    SpO2 160 % is impossible).
    """

    key: str
    label: str
    loinc: str
    loinc_display: str
    ucum: str
    unit_label: str
    low: float
    high: float
    decimals: int
    example: str


VITAL_SIGNS: dict[str, VitalSign] = {
    v.key: v
    for v in (
        VitalSign(
            "systolic", "Systolic BP", "8480-6", "Systolic blood pressure",
            "mm[Hg]", "mmHg", 40, 300, 0, "120",
        ),
        VitalSign(
            "diastolic", "Diastolic BP", "8462-4", "Diastolic blood pressure",
            "mm[Hg]", "mmHg", 20, 200, 0, "80",
        ),
        VitalSign(
            "heart_rate", "Heart rate", "8867-4", "Heart rate",
            "/min", "/min", 20, 300, 0, "72",
        ),
        VitalSign(
            "resp_rate", "Respiratory rate", "9279-1", "Respiratory rate",
            "/min", "/min", 4, 80, 0, "16",
        ),
        VitalSign(
            "temperature", "Temperature", "8310-5", "Body temperature",
            "Cel", "°C", 30, 44, 1, "37.0",
        ),
        VitalSign(
            "spo2", "SpO2", "59408-5",
            "Oxygen saturation in Arterial blood by Pulse oximetry", "%", "%", 50, 100, 0, "98",
        ),
        VitalSign("weight", "Weight", "29463-7", "Body weight", "kg", "kg", 0.3, 500, 1, "70.5"),
    )
}  # fmt: skip

#: LOINC codes that also mean a vital sign we chart (other oximetry code, BP panel parts).
_ALIASES: dict[str, str] = {"2708-6": "spo2"}
_BY_LOINC: dict[str, str] = {v.loinc: k for k, v in VITAL_SIGNS.items()} | _ALIASES
#: Every LOINC code charted as a vital sign (what `vital_key_for_loinc` knows).
CHARTED_LOINC: tuple[str, ...] = tuple(_BY_LOINC)

#: Order of the rows in flowsheets and forms.
VITAL_ORDER: tuple[str, ...] = tuple(VITAL_SIGNS)


@dataclass(frozen=True)
class VitalProblem:
    """What is wrong with one field of the form (`key` None: the whole set)."""

    key: str | None
    message: str


def vital_key_for_loinc(code: str) -> str | None:
    return _BY_LOINC.get(code)


def parse_vital(key: str, text: str) -> tuple[float | None, VitalProblem | None]:
    """Read what was typed in one field: blank is allowed (not measured)."""
    sign = VITAL_SIGNS[key]
    cleaned = text.strip().replace(",", ".")
    if not cleaned:
        return None, None
    try:
        value = float(cleaned)
    except ValueError:
        return None, VitalProblem(
            key, f"{sign.label}: type a number in {sign.unit_label}, e.g. {sign.example}."
        )
    if not math.isfinite(value):
        return None, VitalProblem(key, f"{sign.label}: type a number, e.g. {sign.example}.")
    return value, None


def _range_problem(sign: VitalSign, value: float) -> VitalProblem | None:
    if sign.low <= value <= sign.high:
        return None
    fmt = f"{{:.{sign.decimals}f}}"
    low, high = fmt.format(sign.low), fmt.format(sign.high)
    if sign.key == "temperature" and 86 <= value <= 110:
        hint = " This looks like °F: enter the temperature in °C."
    elif sign.key == "spo2" and value > 100:
        hint = " Oxygen saturation cannot be above 100 %."
    elif sign.key == "weight" and value > sign.high:
        hint = " Check that the weight is in kg, not g or lb."
    else:
        hint = " Check the reading and the unit."
    return VitalProblem(
        sign.key,
        f"{sign.label} {fmt.format(value)} {sign.unit_label} is not possible: "
        f"it must be between {low} and {high} {sign.unit_label}.{hint}",
    )


def check_vitals(values: Mapping[str, float | None]) -> list[VitalProblem]:
    """Every plausibility problem in one set of readings, in form order."""
    problems: list[VitalProblem] = []
    for key in VITAL_ORDER:
        value = values.get(key)
        if value is not None:
            problem = _range_problem(VITAL_SIGNS[key], value)
            if problem:
                problems.append(problem)
    sys_bp, dia_bp = values.get("systolic"), values.get("diastolic")
    if (sys_bp is None) != (dia_bp is None):
        missing = "diastolic" if dia_bp is None else "systolic"
        problems.append(
            VitalProblem(missing, f"Blood pressure needs both numbers: enter the {missing} too.")
        )
    elif sys_bp is not None and dia_bp is not None and sys_bp <= dia_bp:
        problems.append(
            VitalProblem(
                "systolic",
                f"Systolic ({sys_bp:.0f}) must be higher than diastolic ({dia_bp:.0f}). "
                "Were the two numbers swapped?",
            )
        )
    if all(values.get(k) is None for k in VITAL_ORDER):
        problems.append(VitalProblem(None, "Enter at least one reading."))
    return problems


def _coding(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display}


def _quantity(sign: VitalSign, value: float) -> dict[str, Any]:
    return {"value": value, "unit": sign.unit_label, "system": UCUM, "code": sign.ucum}


def vitals_observations(
    patient_id: str,
    values: Mapping[str, float | None],
    effective: datetime,
    *,
    performer: str | None = None,
    encounter: str | None = None,
) -> list[dict[str, Any]]:
    """FHIR Observations for one set of readings (BP as one panel with two components).

    Raises ValueError if the readings do not pass `check_vitals`: callers show the
    problems first, so this is a programming error, never a user's.
    """
    if check_vitals(values):
        raise ValueError("vitals fail the plausibility checks")
    base: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [_VITAL_SIGNS_CATEGORY]}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": effective.isoformat(),
    }
    if performer:
        base["performer"] = [{"reference": performer}]
    if encounter:
        base["encounter"] = {"reference": encounter}
    out: list[dict[str, Any]] = []
    sys_bp, dia_bp = values.get("systolic"), values.get("diastolic")
    if sys_bp is not None and dia_bp is not None:
        components = [
            {"code": _coding(s.loinc, s.loinc_display), "valueQuantity": _quantity(s, v)}
            for s, v in ((VITAL_SIGNS["systolic"], sys_bp), (VITAL_SIGNS["diastolic"], dia_bp))
        ]
        out.append(
            base
            | {
                "id": str(uuid.uuid4()),
                "code": _coding(BP_PANEL_LOINC, "Blood pressure panel"),
                "component": components,
            }
        )
    for key in VITAL_ORDER:
        value = values.get(key)
        if key in ("systolic", "diastolic") or value is None:
            continue
        sign = VITAL_SIGNS[key]
        out.append(
            base
            | {
                "id": str(uuid.uuid4()),
                "code": _coding(sign.loinc, sign.loinc_display),
                "valueQuantity": _quantity(sign, value),
            }
        )
    return out


def _codes(concept: Mapping[str, Any] | None) -> list[str]:
    codings = (concept or {}).get("coding", [])
    return [c.get("code", "") for c in codings if c.get("system") == LOINC]


def readings_of(observation: Mapping[str, Any]) -> dict[str, float]:
    """The vital-sign values one Observation holds (BP panel components included)."""
    found: dict[str, float] = {}
    parts: Iterable[Mapping[str, Any]] = [observation, *observation.get("component", [])]
    for part in parts:
        quantity = part.get("valueQuantity")
        if not isinstance(quantity, Mapping) or not isinstance(quantity.get("value"), int | float):
            continue
        for code in _codes(part.get("code")):
            key = vital_key_for_loinc(code)
            if key:
                found[key] = float(quantity["value"])
                break
    return found
