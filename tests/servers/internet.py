"""Public names for servers on loopback: the one stand-in the image proxy tests need.

The image proxy fetches from public web servers on ports 80 and 443 only and refuses every
internal address (docs/reliability.md C-27), so a test server on 127.0.0.1 at a random port is
out of its reach, as it should be. The internet cannot run here, so ``Internet`` plays its two
parts the proxy cannot check itself: DNS (a name under ``.test`` answers with a public
address) and routing (a connection to that address and port 80 reaches the loopback server).
Everything the proxy does (its guard, its connection, its deadline) runs unchanged.
"""

from __future__ import annotations

import socket

from connector.transport import net


class Internet:
    def __init__(self, monkeypatch):
        self._names: dict[str, str] = {}
        self._routes: dict[tuple[str, int], tuple[str, int]] = {}
        self.connections: list[tuple[str, int]] = []
        real_getaddrinfo = socket.getaddrinfo
        real_connect = net.connect

        def getaddrinfo(host, port, *args, **kwargs):
            address = self._names.get(str(host).rstrip(".").lower())
            if address is None:
                return real_getaddrinfo(host, port, *args, **kwargs)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        def connect(addresses, port, timeout):
            for address in addresses:
                self.connections.append((address, port))
                if (address, port) in self._routes:
                    local, local_port = self._routes[(address, port)]
                    return real_connect([local], local_port, timeout)
            return real_connect(addresses, port, timeout)

        monkeypatch.setattr(net.socket, "getaddrinfo", getaddrinfo)
        monkeypatch.setattr(net, "connect", connect)

    def publish(self, name: str, local_port: int, *, port: int = 80) -> str:
        """Make ``http://<name>`` (a public address, port ``port``) reach 127.0.0.1:local_port;
        returns the URL's origin."""
        address = f"93.184.215.{len(self._names) + 10}"  # a public (global) address
        self._names[name.lower()] = address
        self._routes[(address, port)] = ("127.0.0.1", local_port)
        suffix = "" if port == 80 else f":{port}"
        return f"http://{name}{suffix}"
