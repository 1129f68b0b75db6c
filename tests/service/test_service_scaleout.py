"""Multi-replica mode through Redis, and artifacts on S3-compatible storage (moto's server on loopback)."""

from __future__ import annotations

import boto3
import httpx
import pytest

from tests.service.servicekit import Api, ServiceProcess, bootstrap, free_port, wait_run


def test_two_replicas_share_rate_limits_and_the_job_queue(redis_url, tmp_path, request):
    database = request.getfixturevalue("fresh_postgres")
    common = {"ROBUSTLIT_REDIS_URL": redis_url, "ROBUSTLIT_DATABASE_URL": database, "ROBUSTLIT_RATE_LIMIT": "8",
              "ROBUSTLIT_SECRET_KEY": "a-secret-shared-by-both-replicas-0123456789"}
    # replica A only answers the API; replica B also runs the dispatcher
    a = ServiceProcess(tmp_path / "a", {**common, "ROBUSTLIT_WORKER": "0"}).start()
    b = ServiceProcess(tmp_path / "b", common).start()
    try:
        admin = bootstrap(a.url)
        on_a, on_b = Api(a.url, admin["key"]), Api(b.url, admin["key"])
        project = on_a.post("/projects", json={"name": "replicas"}).json()  # request 1 of 8
        run = on_a.post(f"/projects/{project['id']}/runs", json={"overrides": ["seed=4"]}).json()  # 2
        done = wait_run(Api(b.url, admin["token"]), run["id"])  # the JWT is not rate limited with the key
        assert done["status"] == "succeeded"
        assert [m["value"] for m in Api(a.url, admin["token"]).get(f"/runs/{run['id']}/metrics").json()["items"]
                if m["suite"] == "clean"] == [0.54]
        codes = [(on_a if i % 2 else on_b).get(f"/projects/{project['id']}").status_code for i in range(8)]
        assert codes == [200] * 6 + [429, 429]  # 2 + 6 = 8 requests across both replicas
        assert on_b.get("/projects").headers["Retry-After"]
        ready = httpx.get(f"{a.url}/readyz").json()
        assert ready["checks"] == {"database": "ok", "redis": "ok"}
    finally:
        a.stop()
        b.stop()


@pytest.fixture
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_artifacts_are_uploaded_to_s3_and_downloaded_from_there(s3_endpoint, service_factory, tmp_path):
    credentials = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    server = service_factory(env={**credentials, "ROBUSTLIT_S3_BUCKET": "robustlit-artifacts",
                                  "ROBUSTLIT_S3_ENDPOINT_URL": s3_endpoint, "ROBUSTLIT_S3_PREFIX": "prod"})
    api = bootstrap(server.url)["api"]
    project = api.post("/projects", json={"name": "s3"}).json()
    run = api.post(f"/projects/{project['id']}/runs", json={}).json()
    assert wait_run(api, run["id"])["status"] == "succeeded"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket="robustlit-artifacts")["Contents"]}
    assert {f"prod/{run['id']}/robustness_report.json", f"prod/{run['id']}/plots/curve.png",
            f"prod/{run['id']}/job.log"} <= keys
    # the served bytes come from S3: change the object there and download it again
    s3.put_object(Bucket="robustlit-artifacts", Key=f"prod/{run['id']}/plots/curve.png", Body=b"from-s3")
    assert api.get(f"/runs/{run['id']}/artifacts/plots/curve.png").content == b"from-s3"
    assert api.get(f"/runs/{run['id']}/report").json()["schema_version"] == 1
