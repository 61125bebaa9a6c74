"""A real headless Chromium for tests, driven over the Chrome DevTools Protocol: one page to
load, evaluate JavaScript in and screenshot, with every dialog and uncaught exception kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.services import eventually, log_tail
from tests.tools import require_binary

WINDOW = (1280, 1600)
CALL_SECONDS = 10.0
STOP_SECONDS = 5.0


@dataclass
class DevTools:
    """One DevTools connection: calls by id, their replies, and each tab's events routed to
    that tab's `Page` by session id."""

    socket: aiohttp.ClientWebSocketResponse
    pages: dict[str, Page] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _replies: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)

    async def call(self, method: str, session: str | None = None, **params: Any) -> Any:
        """Call a DevTools method, in a tab's `session` or on the browser; its result."""
        message_id = next(self._ids)
        reply = self._replies[message_id] = asyncio.get_running_loop().create_future()
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self.socket.send_json(message)
        return await asyncio.wait_for(reply, CALL_SECONDS)

    async def dispatch(self) -> None:
        """Route each message: a reply to its caller, an event to its tab."""
        async for raw in self.socket:
            message = json.loads(raw.data)
            if "id" not in message:
                page = self.pages.get(message.get("sessionId", ""))
                if page is not None:
                    page.event(message["method"], message.get("params", {}))
            elif "error" in message:
                error = AssertionError(f"DevTools: {message['error']}")
                self._replies.pop(message["id"]).set_exception(error)
            else:
                self._replies.pop(message["id"]).set_result(message.get("result", {}))


@dataclass
class Page:
    """One tab. `dialogs` and `exceptions` collect what the page opened (alert, confirm,
    prompt) and threw, for the test to assert on."""

    devtools: DevTools
    session: str
    dialogs: list[str] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    _dismissals: set[asyncio.Task[Any]] = field(default_factory=set)

    async def send(self, method: str, **params: Any) -> Any:
        """Call a DevTools method in this tab; its result."""
        return await self.devtools.call(method, self.session, **params)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited if it is a promise)."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            raise AssertionError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def screenshot(self, path: Path) -> Path:
        """Save the whole page, below the fold included, as a PNG at `path`."""
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))
        return path

    def event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.javascriptDialogOpening":
            self.dialogs.append(params["message"])
            # An open dialog blocks the page: dismiss it, so that the test goes on to fail.
            dismissal = asyncio.create_task(self.send("Page.handleJavaScriptDialog", accept=False))
            self._dismissals.add(dismissal)
            dismissal.add_done_callback(self._dismissals.discard)
        elif method == "Runtime.exceptionThrown":
            self.exceptions.append(json.dumps(params["exceptionDetails"]))


@contextlib.asynccontextmanager
async def headless_chromium(directory: Path) -> AsyncIterator[Page]:
    """Debian's chromium, headless with a fresh profile in `directory`, its DevTools on a free
    loopback port; yields one blank tab, and stops the browser at the end."""
    binary = require_binary("chromium")
    profile = directory / "chromium-profile"
    log = directory / "chromium.log"
    arguments = [
        "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
        "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
        f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ]  # fmt: skip
    if os.geteuid() == 0:
        arguments.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            binary, *arguments, "about:blank", stdout=output, stderr=output
        )
    # Port 0: Chromium picks a free port and writes it, and the browser's path, to this file.
    active = profile / "DevToolsActivePort"
    try:
        await eventually(
            lambda: active.exists() and len(active.read_text().split()) == 2,
            lambda: f"chromium's DevTools port: {log_tail(log)}",
        )
        port, path = active.read_text().split()
        async with (
            aiohttp.ClientSession() as client,
            client.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0) as socket,
        ):
            devtools = DevTools(socket)
            dispatcher = asyncio.create_task(devtools.dispatch())
            try:
                target = await devtools.call("Target.createTarget", url="about:blank")
                attached = await devtools.call(
                    "Target.attachToTarget", targetId=target["targetId"], flatten=True
                )
                page = devtools.pages[attached["sessionId"]] = Page(devtools, attached["sessionId"])
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                yield page
            finally:
                dispatcher.cancel()
                await asyncio.gather(dispatcher, return_exceptions=True)
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_SECONDS)
        except TimeoutError:
            process.kill()
            await process.wait()
