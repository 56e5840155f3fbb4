"""A real S3-compatible server on loopback for the tests and benchmarks: moto's server in its own
process (`python -m moto.server`), with the AWS_* variables that point s3fs at it."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

ACCESS_KEY, SECRET_KEY, REGION = "testing-access-key", "testing-secret-key", "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class S3Server:
    """`python -m moto.server` on 127.0.0.1 and a free port, stopped on exit."""

    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this server through s3fs (credentials the fsspec way: env)."""
        return {"AWS_ENDPOINT_URL_S3": self.url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                "AWS_EC2_METADATA_DISABLED": "true"}  # never ask a cloud's metadata address for a role

    def __enter__(self) -> "S3Server":
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start on {self.url}") from None
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)

    def client(self, **credentials):
        """A boto3 S3 client of this server (the tests' own view of the bucket)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=credentials.get("key", ACCESS_KEY),
                            aws_secret_access_key=credentials.get("secret", SECRET_KEY))

    def iam(self):
        import boto3

        return boto3.client("iam", endpoint_url=self.url, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def enforce_auth(self, on: bool) -> None:
        """Make the server check every request's key and IAM policies from now on (or stop checking)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset-auth", data=b"0" if on else b"inf", method="POST",
                                         headers={"Content-Type": "text/plain"})
        urllib.request.urlopen(request, timeout=5).close()

    def user(self, name: str, actions: list[str], bucket: str) -> dict[str, str]:
        """An IAM user of the server allowed only `actions` on `bucket` (none: nothing): its key as env."""
        iam = self.iam()
        iam.create_user(UserName=name)
        if actions:
            iam.put_user_policy(UserName=name, PolicyName="only", PolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": [
                    f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def save_block(self, name: str, user: dict[str, str]) -> str:
        """A prefect-aws `AwsCredentials` block on the Prefect server with the user's key, this server's
        endpoint and region: the value of BATCHFLOWS_STORAGE_BLOCK that names it."""
        from prefect_aws import AwsCredentials

        AwsCredentials(aws_access_key_id=user["AWS_ACCESS_KEY_ID"], aws_secret_access_key=user["AWS_SECRET_ACCESS_KEY"],
                       region_name=REGION, aws_client_parameters={"endpoint_url": self.url}).save(name, overwrite=True)
        return f"aws-credentials/{name}"

    def bucket(self, name: str) -> str:
        """Create a fresh bucket (any old one of the name emptied and removed first); returns s3://name."""
        s3 = self.client()
        try:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
                for item in page.get("Contents", []):
                    s3.delete_object(Bucket=name, Key=item["Key"])
            s3.delete_bucket(Bucket=name)
        except s3.exceptions.NoSuchBucket:
            pass
        s3.create_bucket(Bucket=name)
        return f"s3://{name}"

    def upload(self, path, bucket: str, key: str) -> str:
        """The file at `path` as the object `key`; returns its URL."""
        self.client().upload_file(str(path), bucket, key)
        return f"s3://{bucket}/{key}"

    def fetch(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        s3 = self.client()
        return [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]


CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                        "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def without_credentials(monkeypatch) -> None:
    """This process (and the processes it starts) with no AWS credentials, endpoint or profile files:
    only a Prefect block can say where the bucket is and who may use it."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def use_server(server: S3Server) -> dict[str, str | None]:
    """Point this process's s3fs at the server; returns the previous values for `restore`."""
    previous = {name: os.environ.get(name) for name in server.env}
    os.environ.update(server.env)
    return previous


def restore(previous: dict[str, str | None]) -> None:
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
