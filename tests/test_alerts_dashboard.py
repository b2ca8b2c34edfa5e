"""The dashboard's bell and alerts panel in Debian's Chromium, against a real service process (issue 25)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.helpers import Service, in_page, save_state


async def test_the_bell_counts_the_panel_lists_acks_reach_every_dashboard_and_background_tabs_notify(
    browser: Browser, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    save_state(agents, "a1", status="running", issue_number=7, nl_input="Add a thing")
    config = (
        '[server]\n[webhook]\nstatus_url = ""\n[event_log]\npath = ""\n'
        f"[adw]\nagents_dir = '{agents}'\ntrees_dir = '{tmp_path / 'trees'}'\nprocess_scan = false\n"
    )
    service = await Service(tmp_path, config).start()
    context = await browser.new_context(permissions=["notifications"])
    try:
        page, other = await context.new_page(), await context.new_page()
        for p in (page, other):
            await p.goto(service.url("/"))
            await in_page(p, "document.getElementById('connection-state').textContent === 'Live'")
        assert await page.inner_text("#alerts-notify") == "notifications on"  # the permission is granted
        await page.evaluate("Object.defineProperty(document, 'hidden', {configurable: true, get: () => true})")
        save_state(agents, "a1", status="failed", issue_number=7, last_error="tests failed")
        await in_page(page, "document.getElementById('bell-count').textContent === '1'")
        assert await page.evaluate("window.dashboard.notified") == ["adw_failed:a1"]  # a tab in the background
        assert await other.evaluate("window.dashboard.notified") == []  # one in front: the bell is enough
        assert await page.get_attribute("#bell", "aria-label") == "1 alert needs you"
        await page.click("#bell")
        row = page.locator("li[data-alert-id='adw_failed:a1']")
        assert await row.locator(".alert-title").inner_text() == "ADW a1 (issue #7) failed"
        assert await row.locator(".alert-text").inner_text() == "ADW a1 (issue #7): tests failed"
        assert await row.locator("a").get_attribute("href") == "#/adw/a1"
        await row.locator("button.ack").click()
        for p in (page, other):  # the ack is an event: every dashboard sees it
            await in_page(p, "document.getElementById('bell-count').textContent === '0'")
            await in_page(
                p, "document.querySelector(\"li[data-alert-id='adw_failed:a1']\").className === 'alert acknowledged'"
            )
        save_state(agents, "a1", status="completed", issue_number=7)
        await in_page(
            page, "document.querySelector(\"li[data-alert-id='adw_failed:a1']\").className === 'alert resolved'"
        )
        assert await page.locator("#alerts-rows li").count() == 1
        await row.locator("a").click()
        await in_page(page, "location.hash === '#/adw/a1' && !document.getElementById('detail').hidden")
    finally:
        await context.close()
        await service.stop()
