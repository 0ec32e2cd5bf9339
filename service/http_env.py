"""What the environment tells the client's HTTP (``service.http_client``), read as
``requests`` read it: the proxy for a URL (``http_proxy``, ``https_proxy``, ``all_proxy``,
``no_proxy``; a lower-case name wins over its upper-case twin), the proxy's credentials, and
the CA certificates https trusts (``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE``, a file or a
folder, else certifi's bundle when it is installed, else the system's)."""

from __future__ import annotations

import base64
import os
from urllib.parse import unquote, urlsplit


def proxies() -> dict[str, str]:
    """``{scheme: proxy URL}`` from the environment (an empty lower-case value drops one)."""
    found = {name.lower()[:-6]: value for name, value in os.environ.items()
             if name.lower().endswith("_proxy") and value}
    for name, value in os.environ.items():
        if name.endswith("_proxy"):  # lower case: it wins
            if value:
                found[name[:-6]] = value
            else:
                found.pop(name[:-6], None)
    return found


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``no_proxy`` names ``host``: ``*``, the host or a domain above it (``.a.b`` or
    ``a.b``), ``host:port``, or for an IP address a network (``10.0.0.0/8``)."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", "").lower().split(","):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            import ipaddress  # only for a network entry

            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:  # the host is a name, or the entry no network
                pass
            continue
        name, _, wanted_port = entry.lstrip(".").strip("[]").partition(":")
        if wanted_port and wanted_port != str(port):
            continue
        if host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(scheme: str, host: str, port: int) -> str | None:
    """The proxy URL to reach ``scheme://host:port`` through, or None; a proxy URL without a
    scheme is http. Only http proxies are spoken to (``ValueError`` for SOCKS or an https
    proxy, which ``requests`` needed extras for)."""
    found = proxies()
    if _bypassed(host, port, found.get("no", "")):
        return None
    proxy = found.get(scheme) or found.get("all")
    if not proxy:
        return None
    proxy = proxy if "://" in proxy else f"http://{proxy}"
    if urlsplit(proxy).scheme != "http":
        raise ValueError(f"proxy {proxy!r} (from the environment): only http:// proxies are "
                         "supported; set no_proxy to reach the API directly")
    return proxy


def proxy_auth(proxy: str | None) -> dict[str, str]:
    """The ``Proxy-Authorization`` header for a proxy URL with a user in it."""
    parts = urlsplit(proxy or "")
    if not parts.username:
        return {}
    user = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return {"Proxy-Authorization": "Basic " + base64.b64encode(user.encode()).decode()}


def tls_context():  # -> ssl.SSLContext (ssl is imported here, for https only)
    """The context an https connection verifies the server with."""
    import ssl

    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
