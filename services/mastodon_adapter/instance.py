"""Instance addresses as people type them -> one canonical base URL (or a clear error).

Accepted: `host`, `@user@host`, `user@host`, `https://host/`, `https://host/@user`, upper case,
sub-domains, trailing slashes and dots, IDN (stored as punycode), explicit ports. The result is
what keys `mastodon_apps` and `identities.instance`, so two spellings of one instance share one
app registration.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import idna

from hqx.errors import HqxError, Reason

_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_NAMES = {"localhost"}
_DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_LEN = 512


class InstanceError(HqxError):
    """The address cannot name a Mastodon instance; `message` says why, for the person."""

    code = Reason.INVALID_INSTANCE
    http_status = 422


@dataclass(frozen=True)
class Instance:
    """A normalized instance: `host` is lower-case punycode, with `:port` when not default."""

    scheme: str
    host: str
    port: int | None = None

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.netloc}"

    @property
    def is_local(self) -> bool:
        return _is_local_host(self.host)


def normalize(text: str, *, allow_local: bool = False) -> Instance:
    """Parse what a person typed into an `Instance`; raise `InstanceError` with a reason.

    `allow_local` (tests and development only) accepts `localhost` and private addresses, served
    over plain http; in production they are refused, so the address field cannot be used to make
    the platform call its own network (SSRF).
    """
    raw = (text or "").strip()
    if not raw:
        raise InstanceError(message="empty instance address")
    if len(raw) > MAX_LEN:
        raise InstanceError(message="instance address too long")
    if any(c.isspace() for c in raw):
        raise InstanceError(message="instance address contains spaces")
    scheme, rest = _split_scheme(raw)
    netloc = _strip_account(rest)
    host, port = _split_port(netloc)
    host = _to_ascii(host)
    local = _is_local_host(host)
    if local and not allow_local:
        raise InstanceError(message="local or private addresses are not Mastodon instances")
    if scheme is None or not allow_local:
        # NOTE: an `http://` typed by a person is upgraded: tokens never travel in clear text.
        scheme = "http" if local else "https"
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return Instance(scheme, host, port)


def _split_scheme(raw: str) -> tuple[str | None, str]:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", raw)
    if not m:
        return None, raw
    scheme = m.group(1).lower()
    if scheme not in _DEFAULT_PORTS:
        raise InstanceError(message=f"unsupported scheme {scheme!r}: use https")
    parts = urlsplit(raw)
    if parts.username is not None or "@" in parts.netloc:
        raise InstanceError(message="credentials in the address are not allowed")
    if not parts.netloc:
        raise InstanceError(message="no host in the address")
    return scheme, parts.netloc


def _strip_account(rest: str) -> str:
    """`@user@host`, `user@host`, `host/@user`, `host/path?q` -> `host[:port]`."""
    rest = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest:
        parts = rest.lstrip("@").split("@")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise InstanceError(message="expected @user@instance or an instance name")
        rest = parts[1]
    if not rest:
        raise InstanceError(message="no host in the address")
    return rest


def _split_port(netloc: str) -> tuple[str, int | None]:
    if netloc.startswith("["):
        raise InstanceError(message="IPv6 literals are not supported: use the instance name")
    if ":" not in netloc:
        return netloc, None
    host, _, port_s = netloc.rpartition(":")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise InstanceError(message=f"invalid port {port_s!r}")
    return host, int(port_s)


def _to_ascii(host: str) -> str:
    host = host.rstrip(".").lower()
    if not host:
        raise InstanceError(message="no host in the address")
    if _ip(host) is not None:
        return host
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as e:
        raise InstanceError(message=f"invalid host name {host!r}") from e
    labels = ascii_host.split(".")
    if not all(_LABEL_RE.match(label) for label in labels):
        raise InstanceError(message=f"invalid host name {host!r}")
    if len(labels) < 2 and ascii_host not in _LOCAL_NAMES:
        raise InstanceError(message=f"{host!r} is not a full domain name (e.g. mastodon.social)")
    if labels[-1].isdigit():
        raise InstanceError(message=f"invalid host name {host!r}")
    return ascii_host


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_local_host(host: str) -> bool:
    if host in _LOCAL_NAMES or host.endswith(".localhost"):
        return True
    ip = _ip(host)
    return ip is not None and (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_unspecified
        or ip.is_multicast
    )
