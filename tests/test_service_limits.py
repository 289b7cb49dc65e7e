"""The per-client rate limits of the service (service/limits.py) over a real uvicorn server on
loopback: event media GETs (keyframes, clips) draw on their own budget, so a cluster grid's
thumbnails cannot use up the API budget, and the API budget cannot block the thumbnails; the
media budget is itself bounded."""

from __future__ import annotations

from pathlib import Path

import httpx

from carve.core.config import CarveConfig
from carve.service.app import create_app
from carve.service.limits import MEDIA_FACTOR
from carve.sim.service_fakes import LiveServer, fabricate_root

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_media_gets_are_counted_apart_from_the_api_budget(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CARVE_CATALOG_URL", raising=False)
    fab = fabricate_root(tmp_path / "root", datasets=("sim",), episodes=2, events_per_episode=4, k=3,
                         manifest=False)
    per_min = 5
    cfg = CarveConfig.model_validate({"root": str(fab.root), "service": {"token": TOKEN, "rate_limit_per_min": per_min}})
    eids = fab.event_ids
    with LiveServer(create_app(cfg, start_runner=False)) as srv, httpx.Client(base_url=srv.url, headers=AUTH,
                                                                              timeout=60) as c:
        api = [c.get("/datasets").status_code for _ in range(per_min + 1)]
        assert api[:per_min] == [200] * per_min and api[per_min] == 429  # the API budget is spent
        # ... and the thumbnails of a grid still load: 2 x the API budget of keyframes, all served
        thumbs = [c.get(f"/events/{eids[i % len(eids)]}/keyframes/{i % 3}.jpg") for i in range(per_min)]
        thumbs += [c.get(f"/events/{eids[i % len(eids)]}/keyframe.jpg", params={"i": i % 3}) for i in range(per_min)]
        assert [r.status_code for r in thumbs] == [200] * (2 * per_min)
        assert all(r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8" for r in thumbs)
        assert c.get("/datasets").status_code == 429  # media did not refill or use the API budget
        # the media budget is bounded too: at least MEDIA_FACTOR x per_min in total, then 429
        codes = [c.get(f"/events/{eids[0]}/keyframe.jpg").status_code for _ in range(MEDIA_FACTOR * per_min + 20)]
        first_429 = codes.index(429)
        assert 2 * per_min + first_429 >= MEDIA_FACTOR * per_min
        r = c.get(f"/events/{eids[0]}/keyframe.jpg")
        assert r.status_code == 429 and "media" in r.json()["detail"] and int(r.headers["Retry-After"]) >= 1
        assert c.get("/health").status_code == 200  # exempt from both
