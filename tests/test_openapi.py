"""The OpenAPI document is complete enough to generate a client: no warnings, valid."""
import io

import yaml
from django.core.management import call_command


def test_schema_generates_without_warnings_and_validates():
    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", "--urlconf",
                 "aerolith.urls_schema", stdout=out)
    document = yaml.safe_load(out.getvalue())
    operations = {
        (path, method) for path, item in document["paths"].items() for method in item
    }
    assert ("/api/v1/signup", "post") in operations
    assert ("/api/v1/members/{id}", "patch") in operations
    assert ("/api/v1/test-clock/advance", "post") in operations
    assert {("/api/v1/databases", "post"), ("/api/v1/databases/{id}/query", "post"),
            ("/api/v1/clusters", "post"), ("/api/v1/clusters/{id}", "patch"),
            ("/api/v1/clusters/{id}", "delete"), ("/api/v1/clusters/{id}/scaling-events", "get"),
            ("/api/v1/clusters/{id}/recommendation", "get"),
            ("/api/v1/clusters/recommend", "post")} <= operations
    assert set(document["components"]["securitySchemes"]) == {"apiKey", "jwt"}
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), "operationIds must be unique for client generators"
