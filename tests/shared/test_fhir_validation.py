import json

import pytest

from shared_models.errors import ValidationFailed
from shared_models.fhir_validation import validate_resource
from shared_models.outcomes import from_error


def test_valid_official_example_is_accepted(shared_data):
    example = json.loads(
        (shared_data / "fhir-examples/r4-examples/Patient-example.json").read_text()
    )
    assert validate_resource(example) == "Patient"


def test_invalid_element_is_named_and_value_not_echoed():
    secret = "1970-13-99-not-a-date"
    with pytest.raises(ValidationFailed) as caught:
        validate_resource({"resourceType": "Patient", "birthDate": secret})
    status, body = from_error(caught.value)
    assert status == 400
    assert body["issue"][0]["expression"] == ["Patient.birthDate"]
    assert secret not in json.dumps(body)


def test_type_must_match_the_url():
    with pytest.raises(ValidationFailed) as caught:
        validate_resource({"resourceType": "Patient"}, expected_type="Observation")
    assert caught.value.issues[0][0] == "resourceType"
