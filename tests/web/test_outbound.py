"""The outbound policy: an SSRF corpus against the policy itself (every spelling of a private address is
refused, the admin's allow-list lets named hosts and networks through), fetches against local servers (the
checked address is the one connected to, under the URL's own name; redirects are checked hop by hop;
bodies are capped), and SCRAPE_WEBSITE jobs on a real worker that refuse loopback and say no more than
the host."""
from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from runner import Client, Fatal, Job, JobStatus
from runner.web.outbound import MAX_BYTES, MAX_REDIRECTS, Policy, Refused, Unreachable, fetch
from tests.conftest import WorkerFactory, free_port
from tests.fake_web import FakeWeb, Route, web  # noqa: F401

SECRET = "the-admin-console-secret"
PAGE = f"<html><body><article><h1>Console</h1><p>{SECRET}: a long enough paragraph for the extractor to keep it " \
       "as the readable text of this page.</p></article></body></html>".encode()
ALLOW_LOOPBACK = '["127.0.0.1"]'

PRIVATE = {
    "loopback": ["http://127.0.0.1/", "http://127.0.0.2:8080/admin", "http://127.255.255.254/", "https://127.0.0.1/"],
    "loopback v6": ["http://[::1]/", "http://[0:0:0:0:0:0:0:1]:6379/", "https://[::1]/"],
    "IPv4 spellings": ["http://2130706433/", "http://0x7f000001/", "http://0x7f.1/", "http://0177.0.0.1/",
                       "http://0177.1/", "http://127.1/", "http://127.0.1/", "http://017700000001/",
                       "http://0x7f.0x0.0x0.0x1/", "http://0/", "http://0x0/"],
    "IPv4 in IPv6": ["http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:10.0.0.1]/",
                     "http://[::ffff:169.254.169.254]/", "http://[::127.0.0.1]/", "http://[2002:7f00:1::]/",
                     "http://[2002:a9fe:a9fe::1]/", "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/"],
    "private": ["http://10.0.0.1/", "http://10.255.255.255/", "http://172.16.0.1/", "http://172.31.255.254/",
                "http://192.168.1.1/", "http://192.168.0.1:8443/"],
    "link-local and metadata": ["http://169.254.169.254/latest/meta-data/", "http://169.254.0.1/",
                                "http://2852039166/", "http://0xa9fea9fe/", "http://[fe80::1]/",
                                "http://[fd00:ec2::254]/"],
    "CGNAT": ["http://100.64.0.1/", "http://100.127.255.254/"],
    "unique-local": ["http://[fc00::1]/", "http://[fd12:3456:789a::1]/"],
    "multicast": ["http://224.0.0.1/", "http://239.255.255.250:1900/", "http://[ff02::1]/", "http://[ff0e::1]/"],
    "unspecified": ["http://0.0.0.0/", "http://[::]/"],
    "reserved and special": ["http://240.0.0.1/", "http://255.255.255.255/", "http://198.18.0.1/",
                             "http://192.0.2.1/", "http://203.0.113.5/", "http://192.0.0.8/", "http://[2001:db8::1]/",
                             "http://[2001::1]/", "http://[100::1]/"],
    "names for loopback": ["http://localhost/", "http://LOCALHOST:8080/",
                           "http://user:pw@localhost/", "http://example.com@127.0.0.1/"],
}
PRIVATE_CASES = [(kind, url) for kind, urls in PRIVATE.items() for url in urls]
# allowed entries that do not cover the URL
NOT_COVERED = [("http://127.0.0.1/", ["10.0.0.0/8"]), ("http://127.0.0.2/", ["127.0.0.1"]),
               ("http://localhost/", ["127.0.0.2/32", "intranet.example"]), ("http://[::1]/", ["127.0.0.0/8"]),
               ("http://169.254.169.254/", ["localhost"])]
NOT_HTTP = ["file:///etc/passwd", "ftp://127.0.0.1/", "gopher://127.0.0.1:6379/_INFO", "dict://127.0.0.1:11211/",
            "javascript:alert(1)", "http:///no-host", "//127.0.0.1/", "ldap://169.254.169.254/", "http://[::1/",
            "http://127.0.0.1:99999/", "http://[::ffff:localhost]/"]
ALLOWED = [
    ("http://8.8.8.8/", []), ("https://1.1.1.1/x?y=1", []), ("http://[2606:4700:4700::1111]:8080/", []),
    ("http://134744072/", []), ("http://[::ffff:8.8.8.8]/", []), ("http://[2002:808:808::]/", []),
    ("http://[64:ff9b::808:808]/", []),
    ("http://localhost:8080/", ["localhost"]), ("http://LocalHost/", [" LOCALHOST. "]),
    ("http://127.0.0.1/", ["127.0.0.0/8"]), ("http://127.0.0.1/", ["127.0.0.1"]), ("http://10.1.2.3/", ["10.0.0.0/8"]),
    ("http://[::1]/", ["::1/128"]), ("http://[::1]/", ["[::1]"]), ("http://[::ffff:127.0.0.1]/", ["127.0.0.1"]),
    ("http://2130706433/", ["127.0.0.1"]), ("http://localhost/", ["127.0.0.1"]),
    ("http://169.254.169.254/", ["169.254.169.254/32"]),
]


@pytest.mark.parametrize(("kind", "url"), PRIVATE_CASES, ids=[f"{k}:{u}" for k, u in PRIVATE_CASES])
async def test_private_addresses_are_refused_naming_the_host_at_most(kind: str, url: str) -> None:
    await assert_refused_as_private(url, [])


@pytest.mark.parametrize(("url", "allow"), NOT_COVERED, ids=[f"{u} allow {a}" for u, a in NOT_COVERED])
async def test_the_allow_list_lets_only_what_it_names_through(url: str, allow: list[str]) -> None:
    await assert_refused_as_private(url, allow)


async def assert_refused_as_private(url: str, allow: list[str]) -> None:
    with pytest.raises(Refused) as refused:
        await Policy.allowing(allow).check(url)
    assert isinstance(refused.value, Fatal), "a refusal must not be retried"
    assert str(refused.value) == f"refused: private address {urlsplit(url).hostname}"


@pytest.mark.parametrize("url", NOT_HTTP)
async def test_only_http_urls_with_a_host_are_fetched(url: str) -> None:
    with pytest.raises(Refused, match="^refused: only http and https URLs with a host name are fetched$"):
        await Policy.allowing(["127.0.0.0/8", "localhost"]).check(url)


@pytest.mark.parametrize(("url", "allow"), ALLOWED, ids=[f"{u} allow {a}" for u, a in ALLOWED])
async def test_public_addresses_and_allowed_hosts_and_networks_pass(url: str, allow: list[str]) -> None:
    target = await Policy.allowing(allow).check(url)
    assert target.addresses and target.scheme == urlsplit(url).scheme


async def test_a_host_that_does_not_resolve_is_unreachable_and_nothing_more() -> None:
    with pytest.raises(Unreachable) as failed:
        await fetch("http://no-such-host.invalid:8080/x")
    assert str(failed.value) == "could not fetch http://no-such-host.invalid:8080/x"


async def test_a_url_that_cannot_be_sent_is_refused() -> None:
    with pytest.raises(Refused, match="^refused: only http and https URLs"):
        await fetch("http://8.8.8.8/a\x00b")


async def test_the_request_goes_to_the_checked_address_under_the_urls_own_name(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/a"] = Route(b"hello")
    fetched = await fetch(web.url("/a", host="localhost"), ["localhost"])
    assert (fetched.status, fetched.body, fetched.url) == (200, b"hello", web.url("/a", host="localhost"))
    assert web.hosts == [f"localhost:{web.port}"]


async def test_tls_is_verified_against_the_urls_name(tmp_path: Path) -> None:
    """The connection goes to 127.0.0.1, yet the TLS handshake names `localhost` (SNI) and the
    certificate is checked: a self-signed one is not trusted."""
    with tls_listener(tmp_path) as (port, names), pytest.raises(Unreachable) as failed:
        await fetch(f"https://localhost:{port}/", ["localhost"])
    assert names == ["localhost"]
    assert str(failed.value) == f"could not fetch https://localhost:{port}/"


async def test_connection_failures_say_nothing_of_the_port(web: FakeWeb) -> None:  # noqa: F811
    closed = free_port()
    with pytest.raises(Unreachable) as failed:
        await fetch(f"http://127.0.0.1:{closed}/admin", ["127.0.0.1"])
    assert str(failed.value) == f"could not fetch http://127.0.0.1:{closed}/admin"


async def test_redirects_are_followed_and_each_hop_checked(web: FakeWeb) -> None:  # noqa: F811
    web.routes["/a"] = Route(b"landed")
    web.routes["/moved"] = Route(status=301, location="/a")
    web.routes["/to-metadata"] = Route(status=302, location="http://169.254.169.254/latest/meta-data/")
    web.routes["/to-v6-loopback"] = Route(status=307, location=f"http://[::1]:{web.port}/a")
    web.routes["/to-file"] = Route(status=302, location="file:///etc/passwd")
    web.routes["/loop"] = Route(status=302, location="/loop")
    landed = await fetch(web.url("/moved"), ["127.0.0.1"])
    assert (landed.status, landed.body, landed.url) == (200, b"landed", web.url("/a"))
    for path, refusal in [("/to-metadata", "private address 169.254.169.254"),
                          ("/to-v6-loopback", "private address ::1"), ("/to-file", "only http and https"),
                          ("/loop", f"more than {MAX_REDIRECTS} redirects")]:
        with pytest.raises(Refused, match=f"^refused: {refusal}"):
            await fetch(web.url(path), ["127.0.0.1"])
    assert web.hits["/loop"] == MAX_REDIRECTS + 1 and web.hits["/a"] == 1


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_bodies_are_capped(web: FakeWeb, declared: bool) -> None:  # noqa: F811
    web.routes["/big"] = Route(b"x" * 3000, declare_length=declared)
    with pytest.raises(Fatal, match=r"is larger than 2,000 bytes$"):
        await fetch(web.url("/big"), ["127.0.0.1"], max_bytes=2000)
    assert len((await fetch(web.url("/big"), ["127.0.0.1"], max_bytes=3000)).body) == 3000


# Through a real worker

@pytest.fixture
def client(redis_url: str) -> Iterator[Client]:
    with Client() as c:
        yield c


def scrape(client: Client, url: str) -> Job:
    job = client.submit("SCRAPE_WEBSITE", {"url": url}, user="ana@x.io")
    return client.wait_terminal(job.id, 30)


def told(client: Client, job: Job) -> str:
    """Everything a job's owner is told about its run: errors, tracebacks, result, partial output, and
    the source's record."""
    job = client.get(job.id)
    texts: list[str | None] = [job.last_error, str(job.result), job.partial, *[s.error for s in job.steps]]
    for attempt in job.attempt_log:
        texts += [attempt.error, attempt.traceback, *[s.error for s in attempt.steps]]
    texts += [source.last_error for source in client.sources()]
    return "\n".join(t or "" for t in texts)


def test_a_job_for_a_loopback_page_is_refused_and_learns_nothing(client: Client, web: FakeWeb,  # noqa: F811
                                                                start_worker: WorkerFactory) -> None:
    web.routes["/console"] = Route(PAGE)
    start_worker()
    job = scrape(client, web.url("/console"))
    assert job.status is JobStatus.failed and job.attempts == 1, "a refusal is not retried"
    assert job.last_error and job.last_error.endswith("refused: private address 127.0.0.1")
    said = told(client, job)
    assert SECRET not in said and str(web.port) not in said
    assert web.hits == {}, "nothing may reach the loopback server"


def test_an_allowed_host_is_fetched(client: Client, web: FakeWeb, start_worker: WorkerFactory) -> None:  # noqa: F811
    web.routes["/console"] = Route(PAGE)
    start_worker(TASKDECK_FETCH_ALLOW=ALLOW_LOOPBACK)
    job = scrape(client, web.url("/console"))
    assert job.status is JobStatus.completed, job.last_error
    assert SECRET in job.result["text"]


@pytest.mark.parametrize(("route", "refusal"), [
    (Route(status=302, location="http://169.254.169.254/latest/meta-data/"),
     "refused: private address 169.254.169.254"),
    (Route(status=302, location="/page"), f"refused: more than {MAX_REDIRECTS} redirects"),
    (Route(b"x" * (MAX_BYTES + 1)), f"is larger than {MAX_BYTES:,} bytes"),
], ids=["redirect to metadata", "too many redirects", "oversized body"])
def test_an_allowed_host_cannot_lead_a_job_astray(client: Client, web: FakeWeb, start_worker: WorkerFactory,  # noqa: F811
                                                  route: Route, refusal: str) -> None:
    web.routes["/page"] = route
    start_worker(TASKDECK_FETCH_ALLOW=ALLOW_LOOPBACK)
    job = scrape(client, web.url("/page"))
    assert job.status is JobStatus.failed and job.attempts == 1, job.last_error
    assert job.last_error and job.last_error.endswith(refusal)


@contextmanager
def tls_listener(tmp_path: Path) -> Iterator[tuple[int, list[str]]]:
    """A TLS server on 127.0.0.1 with a self-signed certificate for localhost, for one connection: yields
    its port and the server names (SNI) the client asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path, "localhost"))
    names: list[str] = []
    context.sni_callback = lambda _socket, name, _context: names.append(name)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with suppress(OSError):
            conn, _ = listener.accept()
            with conn, suppress(OSError):
                context.wrap_socket(conn, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], names
    finally:
        thread.join(10)
        listener.close()


def self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file
