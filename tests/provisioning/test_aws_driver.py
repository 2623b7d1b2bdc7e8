"""The Aurora PostgreSQL driver against moto's RDS and CloudWatch."""
from datetime import timedelta

import pytest
from moto import mock_aws

from provisioning.drivers.aws import AwsDriver, aws_region, instance_class, status_health
from provisioning.drivers.base import (
    DEGRADED,
    FAILED,
    HEALTHY,
    PRIMARY,
    PROVISIONING,
    REPLICA,
    SCALING,
    ClusterSpec,
    DriverError,
    Step,
)

from .drivers_support import converge

HANDLE = "aer-test-1"


@pytest.fixture
def aws(monkeypatch):
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_SESSION_TOKEN", "testing"), ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


def spec(nodes: int, **overrides) -> ClusterSpec:
    values = dict(handle=HANDLE, size="medium", nodes=nodes, region="eu-central",
                  admin_user="aerolith_admin", admin_password="a-long-admin-password")
    values.update(overrides)
    return ClusterSpec(**values)


def members(driver):
    state = driver.poll(HANDLE)
    return sorted((n.name, n.role) for n in state.nodes)


def test_create_three_nodes_makes_a_writer_and_two_readers(aws):
    driver = AwsDriver()
    applied = converge(driver, HANDLE, spec(3))
    assert applied == [f"create_primary:{HANDLE}-1", f"add_replica:{HANDLE}-2",
                       f"add_replica:{HANDLE}-3"]
    assert members(driver) == [(f"{HANDLE}-1", PRIMARY), (f"{HANDLE}-2", REPLICA),
                               (f"{HANDLE}-3", REPLICA)]
    state = driver.poll(HANDLE)
    assert state.primary.host.startswith(f"{HANDLE}-1.") and state.primary.port == 5432
    assert "eu-central-1" in state.detail

    import boto3
    rds = boto3.client("rds", region_name="eu-central-1")
    cluster = rds.describe_db_clusters(DBClusterIdentifier=HANDLE)["DBClusters"][0]
    assert cluster["Engine"] == "aurora-postgresql"
    assert cluster["MasterUsername"] == "aerolith_admin"
    instance = rds.describe_db_instances(DBInstanceIdentifier=f"{HANDLE}-2")["DBInstances"][0]
    assert instance["DBInstanceClass"] == "db.r6g.xlarge"


def test_scale_out_to_five_and_in_to_two_keeps_the_writer(aws):
    driver = AwsDriver()
    converge(driver, HANDLE, spec(3))
    converge(driver, HANDLE, spec(5))
    assert len(driver.poll(HANDLE).nodes) == 5

    applied = converge(driver, HANDLE, spec(2))
    assert applied == [f"remove_replica:{HANDLE}-5", f"remove_replica:{HANDLE}-4",
                       f"remove_replica:{HANDLE}-3"]
    assert members(driver) == [(f"{HANDLE}-1", PRIMARY), (f"{HANDLE}-2", REPLICA)]


def test_removing_the_writer_is_refused(aws):
    driver = AwsDriver()
    converge(driver, HANDLE, spec(2))
    with pytest.raises(DriverError, match="never removed"):
        driver.apply(HANDLE, Step("remove_replica", f"{HANDLE}-1"), spec(1))
    assert len(driver.poll(HANDLE).nodes) == 2


def test_delete_removes_instances_and_cluster_then_poll_is_none(aws):
    driver = AwsDriver()
    converge(driver, HANDLE, spec(3))
    assert converge(driver, HANDLE, None) == ["delete_cluster:"]
    assert driver.poll(HANDLE) is None
    import boto3
    rds = boto3.client("rds", region_name="eu-central-1")
    assert rds.describe_db_instances()["DBInstances"] == []
    # deleting what is gone is a no-op
    driver.apply(HANDLE, Step("delete_cluster"), None)


def test_poll_of_an_unknown_handle_is_none(aws):
    assert AwsDriver().poll("never-made") is None
    assert AwsDriver().observe("never-made") == []


def test_apply_twice_is_idempotent(aws):
    driver = AwsDriver()
    for _ in range(2):
        driver.apply(HANDLE, Step("create_primary", f"{HANDLE}-1"), spec(2))
        driver.apply(HANDLE, Step("add_replica", f"{HANDLE}-2"), spec(2))
    import boto3
    rds = boto3.client("rds", region_name="eu-central-1")
    assert len(rds.describe_db_clusters()["DBClusters"]) == 1
    assert len(rds.describe_db_instances()["DBInstances"]) == 2
    driver.apply(HANDLE, Step("remove_replica", f"{HANDLE}-2"), spec(1))
    driver.apply(HANDLE, Step("remove_replica", f"{HANDLE}-2"), spec(1))
    assert members(driver) == [(f"{HANDLE}-1", PRIMARY)]


def test_unknown_region_or_size_is_refused_with_the_choices(aws):
    driver = AwsDriver()
    with pytest.raises(LookupError, match="Region 'mars-1'.*us-east"):
        driver.apply(HANDLE, Step("create_primary", f"{HANDLE}-1"), spec(1, region="mars-1"))
    with pytest.raises(LookupError, match="Unknown node size 'huge'"):
        driver.apply(HANDLE, Step("create_primary", f"{HANDLE}-1"), spec(1, size="huge"))
    assert driver.poll(HANDLE) is None


def test_region_and_size_maps():
    assert [aws_region(r) for r in ("us-east", "us-west", "eu-central", "ap-southeast")] == [
        "us-east-1", "us-west-2", "eu-central-1", "ap-southeast-1"]
    assert instance_class("small") == "db.t4g.medium"
    assert instance_class("xlarge") == "db.r6g.4xlarge"


@pytest.mark.parametrize("status,health", [
    ("available", HEALTHY), ("creating", PROVISIONING), ("modifying", SCALING),
    ("scaling", SCALING), ("deleting", "deleting"), ("failed", FAILED),
    ("inaccessible-encryption-credentials", FAILED), ("something-new", DEGRADED),
])
def test_rds_status_maps_to_health(status, health):
    assert status_health(status) == health


def test_observe_reads_cloudwatch_and_reports_none_without_datapoints(aws):
    import boto3

    from aerolith import clock
    driver = AwsDriver()
    converge(driver, HANDLE, spec(2))
    cloudwatch = boto3.client("cloudwatch", region_name="eu-central-1")
    now = clock.wall_now() - timedelta(minutes=2)
    cloudwatch.put_metric_data(Namespace="AWS/RDS", MetricData=[
        {"MetricName": "CPUUtilization", "Timestamp": now, "Value": 42.5, "Unit": "Percent",
         "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": f"{HANDLE}-1"}]},
        {"MetricName": "FreeableMemory", "Timestamp": now, "Value": 24 * 1024 ** 3,
         "Unit": "Bytes",
         "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": f"{HANDLE}-1"}]},
    ])
    metrics = {m.node: m for m in driver.observe(HANDLE)}
    assert metrics[f"{HANDLE}-1"].cpu_percent == pytest.approx(42.5)
    # db.r6g.xlarge has 32 GiB; 24 GiB freeable -> 25 % used
    assert metrics[f"{HANDLE}-1"].memory_percent == pytest.approx(25.0)
    assert metrics[f"{HANDLE}-2"].cpu_percent is None
    assert metrics[f"{HANDLE}-2"].memory_percent is None
