"""A real S3 API on localhost: moto's server (``moto_server``), not a mock of boto."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tests.support.paths import free_port

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3(NamedTuple):
    endpoint: str
    bucket: str
    env: dict[str, str]  # what a process (a Ray node, a job) needs in its environment to reach it

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", *parts])


@contextmanager
def moto_server(bucket: str = "rlportfolio") -> Iterator[S3]:
    """moto's S3 server on a free localhost port with one bucket; stopped afterwards."""
    import boto3
    import httpx

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        env = {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}
        boto3.client("s3", endpoint_url=endpoint, **_credentials(env)).create_bucket(Bucket=bucket)
        yield S3(endpoint, bucket, env)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _credentials(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def s3_keys(s3: S3, prefix: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint, **_credentials(s3.env))
    pages = client.get_paginator("list_objects_v2")
    return sorted(
        o["Key"] for page in pages.paginate(Bucket=s3.bucket, Prefix=prefix) for o in page.get("Contents", [])
    )
