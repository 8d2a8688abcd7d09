"""The telemetry journal on disk: claims, bounds, lag, and every encoding read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from semon.ingest.spool import Spool, SpoolFull
from semon.store.influx import INFLUX_LINES, decode_lines, encode_lines
from semon.store.telemetry import Point

AWKWARD = ["plain", "with space", "a,b", "k=v", "back\\slash", 'quo"te', "末尾\\", "", "中文 电梯", "=, x"]


def test_line_protocol_reads_back_into_the_points_it_was_written_from():
    points = []
    for i, s in enumerate(AWKWARD):
        tags = {"device_id": f"E{i}", "site": s} if s else {"device_id": f"E{i}"}
        fields = {"door": s, "floor": i, "speed": 1.25 * i, "running": i % 2 == 0, "load": -3, "tiny": 1e-05}
        points.append(Point("elevator_status", tags, fields, 1_700_000_000_000_000_000 + i, f"E{i}"))
    points.append(Point("vessel status,x", {"device_id": "V=1"}, {"pressure": 1.6}, 7, "V=1"))
    back = decode_lines(encode_lines(points))
    for sent, got in zip(points, back, strict=True):
        # What InfluxDB stores: a trailing backslash in a tag becomes ＼ (it would escape the
        # delimiter), so compare with what the encoder promises to write.
        want_tags = {k: v.replace("\\", "\uff3c") if v.endswith("\\") else v for k, v in sent.tags.items()}
        assert (got.measurement, got.tags, got.fields, got.time_ns, got.device_id) == (
            sent.measurement, want_tags, sent.fields, sent.time_ns, sent.device_id,
        )  # fmt: skip


def test_decode_lines_refuses_what_is_not_line_protocol():
    with pytest.raises(ValueError):
        decode_lines(b"no-space-here")


def test_claims_keep_two_writers_apart_and_a_release_gives_a_batch_back(tmp_path: Path):
    sp = Spool(tmp_path / "spool.db", 1 << 20)
    sp.append_many([b"a 1", b"b 2", b"c 3"], INFLUX_LINES)
    first, second = sp.claim(1), sp.claim(2)
    assert [r[1] for r in first] == [b"a 1"] and [r[1] for r in second] == [b"b 2", b"c 3"]
    assert sp.claim(1) == []  # everything is claimed
    sp.release([first[0][0]])
    assert [r[1] for r in sp.claim(5)] == [b"a 1"]
    sp.remove([r[0] for r in first + second])
    assert len(sp) == 0 and sp.bytes == 0
    sp.close()


def test_a_group_that_would_pass_the_bound_is_refused_whole_and_survives_a_reopen(tmp_path: Path):
    sp = Spool(tmp_path / "spool.db", 1 << 20)
    with pytest.raises(SpoolFull):
        sp.append_many([b"x" * 600_000, b"y" * 600_000], INFLUX_LINES)
    assert len(sp) == 0
    sp.append_many([b"x" * 600_000], INFLUX_LINES)
    sp.close()
    again = Spool(tmp_path / "spool.db", 1 << 20)
    assert len(again) == 1 and again.bytes == 600_000
    [(_, body, encoding)] = again.claim(1)
    assert body == b"x" * 600_000 and encoding == INFLUX_LINES
    again.close()


def test_lag_is_the_age_of_the_oldest_waiting_batch(tmp_path: Path):
    sp = Spool(tmp_path / "spool.db", 1 << 20)
    assert sp.lag_s() == 0.0
    sp.append(b"a 1", INFLUX_LINES)
    [(batch_id, _, _)] = sp.claim(1)
    at = sp._db.execute("SELECT at FROM spool").fetchone()[0]
    assert sp.lag_s(now=at + 42.0) == pytest.approx(42.0)
    sp.remove([batch_id])
    assert sp.lag_s(now=at + 99.0) == 0.0
    sp.close()
