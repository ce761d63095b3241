"""The one line ``gptkit serve`` prints once it listens: the model, its URLs and whether a key is needed."""

from __future__ import annotations

from collections.abc import Callable

import uvicorn


def base_url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 hosts in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def startup_line(model_name: str, url: str, api_key_set: bool) -> str:
    """What the server announces: model, API URL, web chat URL, auth state."""
    auth = "API key required (Authorization: Bearer KEY)" if api_key_set else "no API key: open to all"
    return f"gptkit serve: {model_name} at {url}/v1 | web chat: {url}/ | auth: {auth}"


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints ``announce(port)`` once it is listening (port: the bound one)."""

    def __init__(self, config: uvicorn.Config, announce: Callable[[int], str]) -> None:
        super().__init__(config)
        self.announce = announce

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            port = self.servers[0].sockets[0].getsockname()[1] if self.servers else self.config.port
            print(self.announce(port), flush=True)
