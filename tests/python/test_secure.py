"""A Python consumer of a Raven that requires TLS and a token: the README's secure
client, refused without credentials, served with them, and resuming on a new
connection after its old one is gone."""

import datetime
import hashlib
import queue

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import start_raven, stop

TOKEN = "py-desk-token-51d2"


def make_cert(name, issuer=None, ca=False, dns=()):
    """A P-256 key and certificate for `name`, self-signed or signed by `issuer`
    ((cert, key)); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer or (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256()), key


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory):
    """Raven with TLS and one principal, `desk`, known by its token's SHA-256."""
    d = tmp_path_factory.mktemp("tls")
    ca = make_cert("raven test CA", ca=True)
    server = make_cert("localhost", issuer=ca, dns=("localhost",))
    (d / "ca.crt").write_bytes(pem(ca[0]))
    (d / "server.crt").write_bytes(pem(server[0]))
    (d / "server.key").write_bytes(key_pem(server[1]))
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    addr, procs, tmp = start_raven(
        f"""
[server.tls]
cert = "{d / 'server.crt'}"
key = "{d / 'server.key'}"

[[auth.principals]]
name = "desk"
token_sha256 = ["{digest}"]
channels = ["trades"]
"""
    )
    yield addr, (d / "ca.crt").read_bytes()
    stop(procs, tmp)


def channel(addr, ca, token=None):
    tls = grpc.ssl_channel_credentials(root_certificates=ca)
    creds = (
        grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token))
        if token
        else tls
    )
    # The certificate is for localhost; the address is its IP.
    return grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])


def subscribe(stub, pb2, **request):
    requests = queue.Queue()
    requests.put(pb2.ClientMessage(subscribe=pb2.SubscribeRequest(**request)))
    responses = stub.Subscribe(iter(requests.get, None), timeout=60)

    def messages():
        for msg in responses:
            if msg.WhichOneof("payload") != "heartbeat":
                yield msg

    return requests, responses, messages()


def test_without_a_token_nothing_is_served(secure_server, pb):
    pb2, pb2_grpc = pb
    addr, ca = secure_server
    for token in (None, "not-the-token"):
        with channel(addr, ca, token) as ch:
            with pytest.raises(grpc.RpcError) as e:
                pb2_grpc.MarketDataStub(ch).GetStatus(pb2.GetStatusRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED, e.value
    # Plain text does not reach it at all.
    with grpc.insecure_channel(addr) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb2_grpc.MarketDataStub(ch).GetStatus(pb2.GetStatusRequest(), timeout=10)
        assert e.value.code() != grpc.StatusCode.OK


def test_tls_and_a_token_then_a_resume_on_a_new_connection(secure_server, pb):
    """The README's secure client: its entitlements hold, and when its connection is
    gone it resumes on a new one after the last trade it saw, losing none."""
    pb2, pb2_grpc = pb
    addr, ca = secure_server
    trades = pb2.Topic(venue="binance_spot", symbol="SYN2USDT", channel=pb2.CHANNEL_TRADES)
    book = pb2.Topic(venue="binance_spot", symbol="SYN2USDT", channel=pb2.CHANNEL_BOOK)
    first = channel(addr, ca, TOKEN)
    requests, responses, messages = subscribe(
        pb2_grpc.MarketDataStub(first), pb2, topics=[trades, book]
    )
    epoch, last, rejected = 0, 0, None
    for msg in messages:
        if msg.WhichOneof("payload") == "ack":
            if msg.topic.channel == pb2.CHANNEL_BOOK:
                rejected = msg.ack
            else:
                assert msg.ack.result == pb2.Ack.RESULT_SUBSCRIBED, msg.ack.reason
                epoch = msg.ack.epoch
            continue
        assert msg.WhichOneof("payload") == "trade", msg
        last = msg.sequence
        if last >= 20 and rejected is not None:
            break
    assert rejected.result == pb2.Ack.RESULT_REJECTED
    assert '"desk"' in rejected.reason and "channel book" in rejected.reason, rejected.reason
    # The whole connection goes, as when a laptop lid closes.
    responses.cancel()
    first.close()

    second = channel(addr, ca, TOKEN)
    _, responses, messages = subscribe(
        pb2_grpc.MarketDataStub(second),
        pb2,
        resume=[pb2.Resume(topic=trades, epoch=epoch, after_sequence=last)],
    )
    ack = next(messages)
    assert ack.WhichOneof("payload") == "ack", ack
    assert ack.ack.resume == pb2.Ack.RESUME_REPLAYED, ack.ack.reason
    for _ in range(20):
        msg = next(messages)
        assert msg.WhichOneof("payload") == "trade", msg
        assert msg.sequence == last + 1, f"{last} then {msg.sequence}"
        last = msg.sequence
    responses.cancel()
    second.close()
