"""Integration fixtures: a loopback S3 server (``weed mini``) for object-storage tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from streams.durable import SeaweedS3, StorageError, weed_binary

OBJECT_BUCKET = "driftloop"


@pytest.fixture(scope="session")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One S3 server with the ``driftloop`` bucket for the session (the durable broker's)."""
    try:
        weed_binary()
    except StorageError as exc:
        if os.environ.get("DRIFTLOOP_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{exc}, and DRIFTLOOP_REQUIRE_SERVICES=1 requires it")
        pytest.skip(f"{exc} (set DRIFTLOOP_REQUIRE_SERVICES=1 to make this a failure)")
    storage = SeaweedS3(tmp_path_factory.mktemp("objects"), bucket=OBJECT_BUCKET)
    storage.start()
    yield storage
    storage.stop()


@pytest.fixture
def s3_options(object_store: SeaweedS3) -> dict[str, object]:
    """fsspec/s3fs options for ``object_store`` (what ``AWS_*`` variables give a pod)."""
    return {
        "key": object_store.access_key,
        "secret": object_store.secret_key,
        "endpoint_url": object_store.endpoint,
        "client_kwargs": {"region_name": object_store.region},
    }


@pytest.fixture
def s3_prefix(object_store: SeaweedS3) -> str:
    """A fresh ``s3://driftloop/<random>`` prefix for one test."""
    return f"s3://{object_store.bucket}/t-{uuid.uuid4().hex[:12]}"
