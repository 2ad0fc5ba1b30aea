"""Shared fixtures. Real data comes from $CL_DATA_DIR (CI points it at ../shared/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from test_app_helpers import shared_data_dir  # tests/app is on the path (pytest.ini)

ROOT = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found (set CL_DATA_DIR to the folder holding MNIST/raw)")
    return path


@pytest.fixture
def archive_cache_dir(tmp_path, monkeypatch) -> Path:
    """A fresh cache folder (CL_CACHE_DIR) for uploaded archives, models and exports, with
    cl.data's in-memory cache of extracted archives cleared before and after."""
    from cl.data import clear_cache

    folder = tmp_path / "cache"
    monkeypatch.setenv("CL_CACHE_DIR", str(folder))
    clear_cache()
    yield folder
    clear_cache()
