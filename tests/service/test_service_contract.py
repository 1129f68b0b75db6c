"""Contract test: schemathesis drives every operation of the OpenAPI spec; no 5xx, responses match the schema.

Every operation gets a bounded number of generated requests (``EXAMPLES``), so the test stays under a minute.
The checks are the ones that say "no 5xx and no schema violations". ``positive_data_acceptance`` is left out on
purpose: the API also validates what JSON Schema cannot express (the Hydra override grammar, config-group options,
OAuth2 grant semantics) and rightly answers such requests with 4xx.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.service.servicekit import ServiceProcess, bootstrap

CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance]

EXAMPLES = 3


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def contract(request, tmp_path_factory):
    env = {"ROBUSTLIT_MAX_RUNNING": "1"}
    if request.param == "postgresql":  # stricter than SQLite (NUL bytes, 32-bit integers)
        env["ROBUSTLIT_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    server = ServiceProcess(tmp_path_factory.mktemp("contract") / "home", env).start()
    admin = bootstrap(server.url)
    admin["api"].post("/projects", json={"name": "contract"})
    yield server, admin
    server.stop()


def test_every_operation_conforms_to_the_openapi_spec(contract):
    server, admin = contract
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {admin['token']}"}
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40

    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        def check(case):
            case.call_and_validate(base_url=server.url, headers=headers, checks=CHECKS)

        try:
            check()
        except KeyboardInterrupt:
            raise
        except BaseException as error:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures[operation.label] = str(error)[:1500]
    assert not failures, "\n\n".join(f"{label}:\n{message}" for label, message in failures.items())
