"""Which name servers the parent zone delegates a domain to: step 2 of `migrate`, and
`apply` before it waits for ACM's DNS validation (aws.dns).

The question goes to the PARENT zone's own servers (for jobtory.com: the `com.` servers),
not to a recursive resolver, so a stale cache can neither fake nor hide a delegation:
the system resolver only finds those servers; one of them is then asked `<apex> NS`
without recursion, and its referral (the authority section) is the delegation.
`--resolver HOST:PORT` sends the same question to that one server instead (the tests'
local responder, or a server the operator trusts).

UDP first; TCP when the UDP answer is truncated or does not come. Every failure is one
`DnsError` line that names the server and the fix.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from jobtory_stack.errors import DnsError

DNS_PORT = 53
PARENT_SERVERS_TRIED = 3  # a few of the parent's servers, each once over UDP then TCP
RESOLV_CONF = "/etc/resolv.conf"

Server = tuple[str, int]


def parse_resolver(text: str) -> Server:
    """`HOST`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port); port 53 by default."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or DNS_PORT)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, DNS_PORT


def normalize_ns(names: Sequence[str]) -> list[str]:
    """Name server names compared as sets: lowercase, no trailing dot, sorted."""
    return sorted({n.lower().rstrip(".") for n in names})


def delegated_ns(
    apex: str,
    server: Server | None = None,
    timeout: float = 3.0,
    lookup: dns.resolver.Resolver | None = None,
    port: int = DNS_PORT,
) -> list[str]:
    """The NS names `apex` is delegated to (normalized); [] when it is not delegated.

    `server`: ask that one server (--resolver). Otherwise the parent zone's servers,
    found through `lookup` (default: the system resolver) and asked on `port`.
    """
    name = dns.name.from_text(apex)
    if server is not None:
        # A named server may be a recursive resolver (1.1.1.1) or an authoritative one
        # (the parent's, a test responder): RD lets the first recurse, the second ignores it.
        return ask_ns(name, server, timeout, recursion=True)
    parent, addresses = parent_servers(name, lookup or system_resolver(timeout), timeout)
    if not addresses:
        raise DnsError(
            f"no IPv4 address for any name server of {parent}: check the resolver in "
            f"{RESOLV_CONF}, or pass --resolver HOST:PORT"
        )
    last = ""
    for address in addresses[:PARENT_SERVERS_TRIED]:
        try:
            return ask_ns(name, (address, port), timeout)
        except DnsError as exc:
            last = str(exc)  # another of the parent's servers may answer
    raise DnsError(f"no server of the parent zone {parent} answered; the last: {last}")


def system_resolver(timeout: float) -> dns.resolver.Resolver:
    """The resolver of /etc/resolv.conf, bounded: it only finds the parent's servers."""
    try:
        resolver = dns.resolver.Resolver(RESOLV_CONF)
    except (OSError, dns.resolver.NoResolverConfiguration):
        raise DnsError(f"no nameserver in {RESOLV_CONF}: pass --resolver HOST:PORT") from None
    resolver.timeout, resolver.lifetime = timeout, 2 * timeout
    return resolver


def parent_servers(
    name: dns.name.Name, lookup: dns.resolver.Resolver, timeout: float
) -> tuple[str, list[str]]:
    """The zone above `name` (e.g. `com.`) and the addresses of its name servers."""
    try:
        parent = dns.resolver.zone_for_name(name.parent(), resolver=lookup, lifetime=2 * timeout)
        hosts = sorted(rdata.to_text() for rdata in lookup.resolve(parent, "NS"))
        addresses: list[str] = []
        for host in hosts:
            if len(addresses) >= PARENT_SERVERS_TRIED:
                break
            try:
                addresses += sorted(rdata.to_text() for rdata in lookup.resolve(host, "A"))
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue  # an IPv6-only or broken server: try the next one
    except dns.exception.DNSException as exc:
        servers = " ".join(str(ns) for ns in lookup.nameservers)
        # NoRootSOA's own text ("This should never happen!") reads like a crash
        why = "no zone up to the root" if isinstance(exc, dns.resolver.NoRootSOA) else str(exc)
        raise DnsError(
            f"the resolver {servers} cannot find the servers of the zone above "
            f"{name.to_text(omit_final_dot=True)} ({why}); check /etc/resolv.conf, "
            "or pass --resolver HOST:PORT"
        ) from None
    return parent.to_text(), addresses


def ask_ns(
    name: dns.name.Name, server: Server, timeout: float, recursion: bool = False
) -> list[str]:
    """`server`'s NS records for `name`, from its answer or its referral (authority)."""
    # EDNS with a 1232-byte payload (DNS Flag Day 2020): a referral with glue fits in UDP
    query = dns.message.make_query(name, dns.rdatatype.NS, use_edns=0, payload=1232)
    if not recursion:
        query.flags &= ~dns.flags.RD
    response = exchange(query, server, timeout)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return []  # the parent knows no such name: not delegated (yet)
    if rcode != dns.rcode.NOERROR:
        raise DnsError(
            f"DNS server {server[0]}:{server[1]} answered {dns.rcode.to_text(rcode)} to NS "
            f"{name}: pass --resolver HOST:PORT naming a server that answers for it"
        )
    return normalize_ns(
        [
            rdata.target.to_text()
            for rrset in (*response.answer, *response.authority)
            if rrset.rdtype == dns.rdatatype.NS and rrset.name == name
            for rdata in rrset
        ]
    )


def exchange(query: dns.message.Message, server: Server, timeout: float) -> dns.message.Message:
    """One question to `server`: UDP, then TCP if the UDP answer is truncated or missing."""
    host, port = server
    where = address_of(host)
    try:
        return dns.query.udp(query, where, timeout=timeout, port=port, raise_on_truncation=True)
    except dns.message.Truncated:
        udp = "the UDP answer was truncated"
    except dns.exception.Timeout:
        udp = f"no answer within {timeout:g} s over UDP"
    except (OSError, dns.exception.DNSException) as exc:
        udp = f"UDP failed ({str(exc) or type(exc).__name__})"
    try:
        return dns.query.tcp(query, where, timeout=timeout, port=port)
    except dns.exception.Timeout:
        tcp = f"no answer within {timeout:g} s over TCP"
    except (OSError, EOFError, dns.exception.DNSException) as exc:
        tcp = f"TCP failed ({str(exc) or type(exc).__name__})"
    raise DnsError(
        f"DNS server {host}:{port} gave no usable answer to NS {query.question[0].name}: "
        f"{udp}, {tcp}; check that it runs and is reachable from here, or pass "
        "--resolver HOST:PORT"
    )


def address_of(host: str) -> str:
    """dnspython sends to IP addresses only; a host name (--resolver dns.example) is
    resolved by the system first."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:
        return str(socket.getaddrinfo(host, DNS_PORT, type=socket.SOCK_DGRAM)[0][4][0])
    except OSError as exc:
        raise DnsError(
            f"DNS server {host}: no address for it ({exc}); pass --resolver IP:PORT"
        ) from None
