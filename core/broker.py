"""Embedded MQTT broker (amqtt) for the laptop demo and tests without Mosquitto."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host, self.port = host, port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="embedded-broker", daemon=True)
        self._broker: Broker | None = None

    def start(self) -> None:
        """Start listening; returns once the broker accepts connections."""
        self._thread.start()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def _start() -> Broker:
            b = Broker(config, loop=self._loop)
            await b.start()
            return b

        self._broker = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(15)
        log.info("embedded MQTT broker on %s:%d", self.host, self.port)

    def stop(self) -> None:
        """Shut the broker down and end its thread."""
        if self._broker is not None:
            fut: Future[None] = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(10)
            except Exception as e:  # shutting down anyway; say what went wrong
                log.warning("embedded broker shutdown: %s", e)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
