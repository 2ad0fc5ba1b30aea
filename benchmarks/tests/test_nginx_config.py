"""The rendered nginx configuration: affinity and connection settings that a room depends on."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deploy import local


@pytest.fixture
def rendered(tmp_path):
    try:
        return local.render_config("127.0.0.1:8080", [8501, 8502], tmp_path, tmp_path)
    except SystemExit as err:
        pytest.skip(str(err))


def test_idle_upstream_connections_close_before_the_replica_closes_them(rendered):
    """uvicorn (Streamlit's server) drops an idle keep-alive connection after timeout_keep_alive
    seconds; nginx must drop its idle ones first, or a reused connection is reset mid-request."""
    import inspect

    import uvicorn

    replica_s = inspect.signature(uvicorn.Config).parameters["timeout_keep_alive"].default
    upstream = re.search(r"upstream streamlit \{(.*?)\}", rendered, re.S).group(1)
    ours = re.search(r"keepalive_timeout\s+(\d+)s;", upstream)
    assert ours, "the upstream block sets its own keepalive_timeout (nginx's default is 60 s)"
    assert int(ours.group(1)) < replica_s
    assert "hash $affinity consistent" in upstream
    assert upstream.count("server 127.0.0.1:") == 2


def test_nginx_accepts_the_rendered_configuration(rendered, tmp_path):
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed")
    conf = tmp_path / "nginx.conf"
    conf.write_text(rendered)
    r = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
