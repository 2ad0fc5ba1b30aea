"""The protocol load generator's own parts: the byte meter, link parsing, percentiles, loopback only.
(Against a real server: benchmarks/tests/test_replicas.py and `python -m benchmarks --only wsroom`.)"""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

from benchmarks import wsroom


def _serve_once(payload: bytes) -> tuple[int, threading.Thread, list]:
    """A TCP server on 127.0.0.1 that reads one request line and answers ``payload``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    got: list = []

    def run():
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(1024))
            conn.sendall(payload)
        srv.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv.getsockname()[1], t, got


def test_the_meter_counts_every_byte_each_way():
    payload = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
    port, t, got = _serve_once(payload)
    with wsroom.TcpMeter(port) as meter:
        with socket.create_connection(("127.0.0.1", meter.port)) as c:
            c.sendall(b"GET / HTTP/1.0\r\n\r\n")
            received = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                received += chunk
        t.join(5)
    assert received == payload
    assert got == [b"GET / HTTP/1.0\r\n\r\n"]
    assert meter.down == len(payload) and meter.up == len(got[0])


def test_links_split_into_page_name_and_query():
    assert wsroom.split_link("embedding?dataset=mnist&model=mnist-best&method=tsne") == \
        ("embedding", "dataset=mnist&model=mnist-best&method=tsne")
    assert wsroom.split_link("?dataset=mnist") == ("", "dataset=mnist")  # the Overview (default page)
    assert wsroom.split_link("train") == ("train", "")


def test_percentiles_follow_numpys_definition():
    """One percentile for every benchmark (benchmarks.common): numpy's linear interpolation, so
    the median of an even count is the mean of the middle two, not one of them."""
    from benchmarks.common import percentile, percentiles

    assert percentiles([4.0, 1.0, 3.0, 2.0])["p50_s"] == 2.5  # by hand: (2 + 3) / 2
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == 3.85  # by hand: rank 0.95 * 3 = 2.85, 85 % of the way from 3 to 4
    values = list(np.random.default_rng(1).exponential(3.0, 200))
    p = percentiles(values)
    for q in (50, 90, 95):
        assert p[f"p{q}_s"] == round(float(np.percentile(values, q)), 3)
    assert p["max_s"] == round(max(values), 3) and p["n"] == 200
    assert p["mean_s"] == round(sum(values) / 200, 3)
    assert percentiles([]) == {"n": 0}


def test_only_this_machine_is_contacted():
    with pytest.raises(ValueError, match="127.0.0.1"):
        wsroom.sequential_views("http://example.org:8501", "?dataset=mnist", 1)
    wsroom._require_loopback("http://127.0.0.1:8501")  # no error


def test_a_rerun_request_carries_the_page_and_its_query():
    from streamlit.proto.BackMsg_pb2 import BackMsg

    msg = BackMsg()
    msg.ParseFromString(wsroom.rerun_msg("metrics", "dataset=cifar10&model=cifar10-best"))
    assert msg.WhichOneof("type") == "rerun_script"
    assert msg.rerun_script.page_name == "metrics"
    assert msg.rerun_script.query_string == "dataset=cifar10&model=cifar10-best"
