import pytest
from tests.conftest import api_client
@pytest.mark.django_db
def test_x(bob):
    r = api_client("bob").post("/api/v1/auth/token", {"email": "m", "password": "x"}, format="json")
    print(r.status_code, r.content[:300])
