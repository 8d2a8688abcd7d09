"""Hazards in the console, in Chromium: firm A's dispatcher records a major hazard on its
elevator, assigns it, attaches a photo and rectifies it through the page; the regulator verifies
and closes it; the API shows every step with the person who did it; firm B sees none of it.

Screenshots: test-artifacts/console/11-hazards-list.png … 14-hazard-closed.png.
"""

from __future__ import annotations

from pathlib import Path

from tests.api.test_board import browser  # noqa: F401  (the Chromium fixture)
from tests.api.test_console import _shot, console_city


def test_a_hazard_from_the_firms_page_to_the_regulators_verification(pg_url, browser, tmp_path: Path):  # noqa: F811
    photo = tmp_path / "门防夹装置更换后.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + b"jpeg" * 100)
    with console_city(pg_url, tmp_path, browser) as city, city.serve() as (api, http):
        ctx, page = city.signed_in(api, "li.desk", height=900)
        page.click("#nav-hazards")
        page.wait_for_selector("#hazards-view:not([hidden])", timeout=10_000)
        page.wait_for_selector("#no-hz:not([hidden])", timeout=10_000)
        page.fill("#hz-device", "E1")
        page.select_option("#hz-code", "EL-M-ANTIPINCH-FAILED")
        page.fill("#hz-description", "3 层层门防夹光幕失效")
        page.click("#hz-submit")
        page.wait_for_selector('#hz-one:not([hidden])[data-status="open"]', timeout=10_000)
        assert "门防夹保护装置失效" in page.inner_text("#hz-title")
        assert "重大隐患" in page.inner_text("#hz-meta") and "整改期限" in page.inner_text("#hz-meta")
        assert page.locator("button.hz-verify").count() == 0  # the regulator's step
        page.fill("#hz-assignee", "李明")
        page.click("button.hz-assign")
        page.wait_for_function("document.querySelector('#hz-meta').innerText.includes('李明')")
        page.set_input_files("#hz-file", str(photo))
        page.click("button.hz-upload")
        page.locator("#hz-evidence li").first.wait_for(timeout=10_000)
        page.click("button.hz-rectify")  # without a note: refused by the page
        assert "请填写说明" in page.inner_text("#hz-actions .err")
        page.fill("#hz-note", "更换防夹光幕，测试正常")
        page.click("button.hz-rectify")
        page.wait_for_selector('#hz-one[data-status="rectified"]', timeout=10_000)
        _shot(page, "11-hazard-rectified.png")
        hid = int(page.evaluate("location.hash.split('/').pop()"))
        page.goto(f"{api.url}/board#/hazards")
        page.wait_for_selector(f'#hz-list li[data-hazard-id="{hid}"]', timeout=10_000)
        _shot(page, "12-hazards-list.png")
        ctx.close()

        # Firm B: not in its list, and the page is not found.
        ctx, page = city.signed_in(api, "zhao.desk", height=900)
        page.goto(f"{api.url}/board#/hazards")
        page.wait_for_selector("#no-hz:not([hidden])", timeout=10_000)
        assert page.evaluate(f"fetch('/hazards/{hid}').then(r => r.status)") == 404
        ctx.close()

        # The regulator verifies and closes it.
        ctx, page = city.signed_in(api, "gz.regulator", height=900)
        page.goto(f"{api.url}/board#/hazard/{hid}")
        page.wait_for_selector('#hz-one:not([hidden])[data-status="rectified"]', timeout=10_000)
        _shot(page, "13-hazard-to-verify.png")
        page.click("button.hz-verify")
        page.wait_for_selector('#hz-one[data-status="closed"]', timeout=10_000)
        _shot(page, "14-hazard-closed.png")
        page.click("#lang")
        page.wait_for_function("document.querySelector('#hz-meta').innerText.includes('Major hazard')")
        ctx.close()

        done = http.get(f"/hazards/{hid}").json()
        assert done["status"] == "closed" and done["closed_by"] == "gz.regulator" and done["assignee"] == "李明"
        assert [(s["step"], s["actor"]) for s in done["steps"]] == [
            ("found", "li.desk"), ("assign", "li.desk"), ("evidence", "li.desk"), ("rectify", "li.desk"),
            ("verify", "gz.regulator"),
        ]  # fmt: skip
        [ev] = done["evidence"]
        assert ev["filename"] == photo.name and ev["size"] == photo.stat().st_size
        assert http.get(f"/hazards/{hid}/evidence/{ev['id']}").content == photo.read_bytes()
    assert city.errors == [], city.errors
