"""Raw rows are written with COPY text: tabs, newlines, backslashes, quotes and non-ASCII in
ids and properties must come back exactly, and stay idempotent."""
import orjson
import pytest
from django.db import connection

from metering.services.ingest import usage_ingest


@pytest.mark.django_db
def test_ids_and_properties_with_copy_special_characters_are_stored_exactly(alice):
    ids = ['a\tb', 'c\nd', 'e\\f', 'g"h', 'i,j{k}', 'ümlaut €', 'r\rs', 'back\\\\slash\\t']
    props = {"s": "x\ty\n\\z\"q", "n": [1, {"a": "\\"}], "u": "ü"}
    r = usage_ingest(tenant=alice, events=[{"id": i, "meter": "compute_hours", "quantity": 1.25, "properties": props} for i in ids])
    assert r.accepted == len(ids), r
    with connection.cursor() as c:
        c.execute("SELECT event_id, properties, quantity FROM metering_usageevent WHERE tenant_id=%s ORDER BY id", [alice.pk])
        rows = c.fetchall()
    assert [x[0] for x in rows] == ids
    assert [orjson.loads(x[1]) for x in rows] == [props] * len(ids)
    assert [str(x[2]) for x in rows] == ["1.250000"] * len(ids)
    assert usage_ingest(tenant=alice, events=[{"id": i, "meter": "compute_hours"} for i in ids]).duplicates == len(ids)
