"""The status page end to end: simulator → daemon → / in a real headless Chromium.

The daemon polls the Hyperliquid simulator playing the Foundation scenario (January 2025). The
page, loaded once, must show its numbers, follow the simulator when a validator is jailed and
another one joins, jailed, under a name that is markup, and never reload or run that markup.
The screenshot is left at `<pytest's tmp_path for the test>/status-page.png`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from quorumwatch.simulator import load_scenario, parse_scenario, start_simulator
from tests.browser import Page, headless_chromium
from tests.builders import daemon_settings
from tests.services import eventually, running_daemon

CHAIN = "hyperliquid"
FJORD = "0x00000000000000000000000000000000000000a6"
KESTREL = "0x00000000000000000000000000000000000000ab"
HOSTILE = "0x00000000000000000000000000000000000000ff"
HOSTILE_NAME = "<script>alert(1)</script>"
HOSTILE_ENTITY = "<img src=x onerror=alert(2)>"

# What the page shows, read from its DOM by the cells' data-field names.
SUMMARY = f"""(() => {{
  const chain = document.querySelector('section[data-chain="{CHAIN}"]');
  if (!chain) return null;
  const field = (name) => chain.querySelector(`[data-field="${{name}}"]`)?.textContent ?? null;
  const rows = (name) => [...chain.querySelectorAll(`[data-field="${{name}}"] tr`)];
  const cells = (row) => [...row.cells].map((cell) => cell.textContent);
  return {{
    up: field("up"),
    nakamoto: Object.fromEntries(["validator", "entity"].flatMap((g) =>
      ["halt", "majority", "control"].map((t) => [g + "-" + t, field(`nakamoto-${{g}}-${{t}}`)]))),
    margin: field("liveness-margin"),
    online: field("validators-online"),
    jailedCount: field("validators-jailed"),
    jailEvents24h: field("jail-events-24h"),
    entities: rows("entities").map((row) => [row.className, ...cells(row)]),
    jailed: rows("jailed").map(cells),
    endpoints: rows("endpoints").map(cells),
    alerts: [...chain.querySelectorAll('[data-field="alerts"] li strong')]
      .map((e) => e.textContent),
  }};
}})()"""


def foundation_then_jailed() -> dict[str, Any]:
    """The Foundation scenario's first set until the test moves on, then Fjord Nodes jailed and
    a validator named as a script tag joining, jailed."""
    foundation = load_scenario("foundation-2025")
    validators = [
        {
            "validator": v.validator,
            "signer": v.signer,
            "name": v.name,
            "stake": v.stake,
            "jailed": v.jailed,
            "active": v.active,
        }
        for v in foundation.steps[0].validators
    ]
    joining = {"validator": HOSTILE, "name": HOSTILE_NAME, "stake_hype": "1000000", "jailed": True}
    return {
        "name": "foundation, then a jail",
        "steps": [
            {"repeat": 1_000_000, "validators": validators},
            {"changes": {FJORD: {"jailed": True}, HOSTILE: joining}},
        ],
    }


async def shown(page: Page, check: Any, what: str) -> dict[str, Any]:
    """The page's summary once `check(summary)` holds."""
    seen: list[dict[str, Any]] = []

    async def ready() -> bool:
        summary = await page.evaluate(SUMMARY)
        if summary is None:
            return False
        seen.append(summary)
        return bool(check(summary))

    await eventually(ready, lambda: f"{what}; the page showed {seen[-1:]}")
    return seen[-1]


@pytest.mark.slow  # about 3 s: Chromium, the daemon and two scenario steps
async def test_status_page_shows_the_foundation_scenario_and_follows_it(tmp_path: Path) -> None:
    """Loaded once in Chromium, / shows the Foundation's Nakamoto coefficients, shares (the
    Foundation's row red), margin, jailed validator, endpoint and firing alert; when the
    simulator jails Fjord Nodes and a validator named `<script>…` joins jailed, the same page
    shows them without reloading, the names as text, no dialog opened and no script error."""
    async with (
        await start_simulator(parse_scenario(foundation_then_jailed())) as simulator,
        headless_chromium(tmp_path) as page,
    ):
        settings = daemon_settings(
            tmp_path / "qw.db",
            chains=[
                {
                    "name": CHAIN,
                    "kind": "hyperliquid",
                    "poll_interval_seconds": 0.2,
                    "endpoints": [{"name": "simulator", "url": simulator.base_url}],
                    "entities": [{"name": HOSTILE_ENTITY, "validators": [KESTREL]}],
                }
            ],
        )
        async with running_daemon(settings, stop_within=5) as metrics_url:
            await page.send("Page.navigate", url=metrics_url.removesuffix("metrics"))
            before = await shown(
                page,
                lambda s: s["up"] == "up" and s["alerts"] and s["jailed"],
                "the chain up with its firing alert",
            )
            await page.evaluate("window.loadedOnce = true")
            async with aiohttp.ClientSession() as session:
                await session.post(f"{simulator.base_url}/_sim/step")
            after = await shown(
                page,
                lambda s: len(s["jailed"]) == 3 and s["alerts"].count("ValidatorJailed") == 3,
                "Fjord Nodes and the newcomer jailed, and alerted on",
            )
            assert await page.evaluate("window.loadedOnce === true"), "the page reloaded"
            scripts = await page.evaluate("document.scripts.length")
            images = await page.evaluate("document.images.length")
            screenshot = await page.screenshot(tmp_path / "status-page.png")

    assert page.dialogs == []
    assert (scripts, images) == (1, 0)  # the markup in names stayed text
    assert page.exceptions == []
    assert before["nakamoto"] == {
        "validator-halt": "3", "validator-majority": "4", "validator-control": "5",
        "entity-halt": "1", "entity-majority": "1", "entity-control": "1",
    }  # fmt: skip
    # 81.40% alone can halt and control: its row is red, and nothing after it is coloured.
    assert before["entities"][0][:5] == [
        "coalition-halt",
        "1",
        "Hyper Foundation",
        "81.40%",
        "81.40%",
    ]
    assert {row[0] for row in before["entities"][1:]} == {""}
    assert ["", "12", HOSTILE_ENTITY, "0.54%", "100.00%", ""] in before["entities"]
    assert before["margin"] == "32.27%"  # (404.5M − Ironbark's 4.3M) / 404.5M − 2/3
    assert (before["online"], before["jailedCount"]) == ("15", "1")
    assert [row[:3] for row in before["jailed"]] == [["Ironbark", f"0x{'0' * 38}a9", "its own"]]
    assert before["endpoints"][0][:2] == ["simulator", "up"]
    assert before["alerts"] == [
        "EntityCanControl",
        "EntityCanHalt",
        "EntityHasMajority",
        "ValidatorJailed",
    ]

    # 405.5M staked, 11.9M of it jailed: (405.5 − 11.9) / 405.5 − 2/3.
    assert after["margin"] == "30.40%"
    assert (after["online"], after["jailedCount"]) == ("14", "3")
    assert after["jailEvents24h"] == "2"
    names = sorted(row[0] for row in after["jailed"])
    assert names == sorted(["Ironbark", "Fjord Nodes", HOSTILE_NAME])
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
