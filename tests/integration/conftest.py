"""Integration fixtures: options and prefixes on the session's loopback S3 server
(``s3_storage`` in ``tests/conftest.py``) for object-storage tests, and a headless
Chromium for report pages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from samples.browser import DevTools, chromium

from streams.durable import SeaweedS3


@pytest.fixture
def s3_options(s3_storage: SeaweedS3) -> dict[str, object]:
    """fsspec/s3fs options for ``s3_storage`` (what ``AWS_*`` variables give a pod)."""
    return {
        "key": s3_storage.access_key,
        "secret": s3_storage.secret_key,
        "endpoint_url": s3_storage.endpoint,
        "client_kwargs": {"region_name": s3_storage.region},
    }


@pytest.fixture
def s3_prefix(s3_storage: SeaweedS3) -> str:
    """A fresh ``s3://<bucket>/<random>`` prefix for one test."""
    return f"s3://{s3_storage.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    """One headless Chromium for a test module's report pages (samples/browser.py)."""
    with chromium(tmp_path_factory.mktemp("chromium")) as client:
        yield client
