"""Integration fixtures: options and prefixes on the session's loopback S3 server
(``s3_storage`` in ``tests/conftest.py``) for object-storage tests, a headless
Chromium for report pages, and a test's own embedded Feast repo."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture
def embedded_store(tmp_path: Path) -> Iterator[Any]:
    """A fresh embedded Feast repo of this test's own (SQLite online store, parquet
    parts, DuckDB), applied; its project dropped afterwards."""
    from services.features.feast_repo import apply_repo, copy_repo, drop_project, open_repo

    store = open_repo("embedded", repo_path=copy_repo(tmp_path / "repo"),
                      project=f"t_{uuid.uuid4().hex[:12]}")
    apply_repo(store)
    yield store
    drop_project(store)
