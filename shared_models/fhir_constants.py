"""Code systems and identifiers the product writes and reads (FHIR canonical URIs).

Vital-sign LOINC codes and UCUM units live with their plausibility rules in
`shared_models.vitals`; this module holds the systems and the clinic's own
identifier namespaces.
"""

from __future__ import annotations

from typing import Final

LOINC: Final = "http://loinc.org"
UCUM: Final = "http://unitsofmeasure.org"
SNOMED: Final = "http://snomed.info/sct"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX: Final = "http://hl7.org/fhir/sid/cvx"
NPI: Final = "http://hl7.org/fhir/sid/us-npi"

#: The clinic network's medical record numbers (Patient.identifier.system).
MRN_SYSTEM: Final = "urn:oid:2.16.840.1.113883.19.5.99999.1"
#: Identifier type code for an MRN (v2 table 0203).
MRN_TYPE: Final = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
    "text": "MRN",
}

#: Location.extension giving the site's IANA time zone (valueCode, e.g. "America/Chicago").
TIMEZONE_EXTENSION: Final = "http://hl7.org/fhir/StructureDefinition/timezone"

OBSERVATION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
ALLERGY_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION: Final = (
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
)
PRACTITIONER_ROLE: Final = "http://terminology.hl7.org/CodeSystem/practitioner-role"
ENCOUNTER_CLASS: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"

#: LOINC document type of a clinician's progress note and a nursing note.
PROGRESS_NOTE_LOINC: Final = "11506-3"
NURSING_NOTE_LOINC: Final = "34746-8"
