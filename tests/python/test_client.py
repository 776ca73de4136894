"""A Python consumer of Raven's gRPC API: subscribe, snapshot + deltas, unsubscribe,
and the documented statuses for bad requests."""

import queue
import time
from decimal import Decimal

import grpc
import pytest


class Stream:
    """A Subscribe stream driven from a queue of client messages."""

    def __init__(self, stub, pb2):
        self.pb2 = pb2
        self.requests = queue.Queue()
        self.responses = stub.Subscribe(iter(self.requests.get, None), timeout=60)

    def send(self, **kind):
        self.requests.put(self.pb2.ClientMessage(**kind))

    def topic(self, symbol, channel, depth=0, venue="binance_spot"):
        return self.pb2.Topic(venue=venue, symbol=symbol, channel=channel, depth=depth)

    def next(self):
        while True:
            msg = next(self.responses)
            if msg.WhichOneof("payload") != "heartbeat":
                return msg

    def close(self):
        self.requests.put(None)
        self.responses.cancel()


@pytest.fixture
def stub(raven_server, pb):
    _, pb2_grpc = pb
    channel = grpc.insecure_channel(raven_server)
    yield pb2_grpc.MarketDataStub(channel)
    channel.close()


def apply(book, levels):
    for lvl in levels:
        price, qty = Decimal(lvl.price), Decimal(lvl.quantity)
        assert price > 0, f"non-positive price {lvl.price}"
        assert qty >= 0, f"negative quantity {lvl.quantity}"
        if qty == 0:
            book.pop(price, None)
        else:
            book[price] = qty


def test_snapshot_then_contiguous_deltas_then_unsubscribe(stub, pb):
    pb2, _ = pb
    s = Stream(stub, pb2)
    topic = s.topic("SYN0USDT", pb2.CHANNEL_BOOK)
    s.send(subscribe=pb2.SubscribeRequest(topics=[topic]))

    ack = s.next()
    assert ack.WhichOneof("payload") == "ack"
    assert ack.ack.result == pb2.Ack.RESULT_SUBSCRIBED
    assert ack.topic.symbol == "SYN0USDT"

    snap = s.next()
    assert snap.WhichOneof("payload") == "book_snapshot"
    bids, asks = {}, {}
    apply(bids, snap.book_snapshot.bids)
    apply(asks, snap.book_snapshot.asks)
    assert all(Decimal(l.quantity) > 0 for l in snap.book_snapshot.bids)
    # How deep the book is known to be complete, per side: never more than it holds.
    assert 0 < snap.book_snapshot.known_bid_levels <= len(snap.book_snapshot.bids)
    assert 0 < snap.book_snapshot.known_ask_levels <= len(snap.book_snapshot.asks)
    seq = snap.sequence
    last_id = snap.book_snapshot.last_update_id

    for _ in range(50):
        msg = s.next()
        assert msg.WhichOneof("payload") == "book_delta", msg
        assert msg.sequence == seq + 1, "sequence numbers must be contiguous"
        seq = msg.sequence
        assert msg.book_delta.first_update_id == last_id + 1, "deltas follow the snapshot without a gap"
        last_id = msg.book_delta.last_update_id
        assert msg.exchange_time_ns > 0 and msg.receive_time_ns > 0
        assert msg.send_time_ns >= msg.receive_time_ns
        apply(bids, msg.book_delta.bids)
        apply(asks, msg.book_delta.asks)
        assert max(bids) < min(asks), "a published book must never be crossed"

    s.send(unsubscribe=pb2.UnsubscribeRequest(topics=[topic]))
    while True:
        msg = s.next()
        if msg.WhichOneof("payload") == "ack":
            assert msg.ack.result == pb2.Ack.RESULT_UNSUBSCRIBED
            break
        assert msg.WhichOneof("payload") == "book_delta"
    # Nothing of the topic follows its unsubscribe ack; a ping still works.
    s.send(ping=pb2.Ping(nonce=7))
    msg = s.next()
    assert msg.WhichOneof("payload") == "pong" and msg.pong.nonce == 7
    s.close()


def test_bad_topics_are_rejected_without_killing_the_stream(stub, pb):
    pb2, _ = pb
    s = Stream(stub, pb2)
    s.send(
        subscribe=pb2.SubscribeRequest(
            topics=[
                s.topic("BTCUSDT", pb2.CHANNEL_BOOK, venue="nowhere"),
                s.topic("NOPE", pb2.CHANNEL_TRADES),
                s.topic("SYN0USDT", pb2.CHANNEL_FUNDING),
                s.topic("SYN0USDT", pb2.CHANNEL_TRADES, depth=5),
            ]
        )
    )
    reasons = []
    for _ in range(4):
        msg = s.next()
        assert msg.WhichOneof("payload") == "ack"
        assert msg.ack.result == pb2.Ack.RESULT_REJECTED
        reasons.append(msg.ack.reason)
    assert "unknown venue" in reasons[0]
    assert "unknown symbol" in reasons[1]
    assert "does not carry" in reasons[2]
    assert "depth" in reasons[3]

    s.send(subscribe=pb2.SubscribeRequest(topics=[s.topic("SYN1USDT", pb2.CHANNEL_TRADES)]))
    msg = s.next()
    assert msg.ack.result == pb2.Ack.RESULT_SUBSCRIBED
    trade = s.next()
    assert trade.WhichOneof("payload") == "trade"
    assert Decimal(trade.trade.price) > 0 and Decimal(trade.trade.quantity) > 0
    s.close()


def test_unary_calls_and_their_statuses(stub, pb):
    pb2, _ = pb
    book = stub.GetOrderBook(pb2.GetOrderBookRequest(venue="binance_spot", symbol="SYN2USDT", depth=5))
    assert 0 < len(book.bids) <= 5 and 0 < len(book.asks) <= 5
    assert Decimal(book.bids[0].price) < Decimal(book.asks[0].price)

    for request, code, words in [
        (pb2.GetOrderBookRequest(venue="nasdaq", symbol="X"), grpc.StatusCode.INVALID_ARGUMENT, "venue"),
        (pb2.GetOrderBookRequest(venue="binance_spot", symbol="NOPE"), grpc.StatusCode.NOT_FOUND, "NOPE"),
        (pb2.GetOrderBookRequest(venue="binance_spot", symbol="SYN0USDT", depth=10**6), grpc.StatusCode.INVALID_ARGUMENT, "depth"),
        (pb2.GetOrderBookRequest(venue="binance_spot", symbol=""), grpc.StatusCode.INVALID_ARGUMENT, "symbol"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            stub.GetOrderBook(request)
        assert err.value.code() == code
        assert words in err.value.details()

    listed = stub.ListInstruments(pb2.ListInstrumentsRequest())
    assert sorted(i.symbol for i in listed.instruments) == ["SYN0USDT", "SYN1USDT", "SYN2USDT"]
    assert pb2.CHANNEL_CANDLES_1M in listed.instruments[0].channels

    status = stub.GetStatus(pb2.GetStatusRequest())
    assert status.ready
    assert all(b.state == "synced" for b in status.books)
    assert status.connections and status.connections[0].state == "connected"


def test_a_new_stream_resumes_where_the_last_one_left_off(stub, pb):
    """The stream ends (as a lost connection would); a new one resumes both topics
    after their last sequence and gets every trade and book delta in between, once."""
    pb2, _ = pb
    first = Stream(stub, pb2)
    trades = first.topic("SYN1USDT", pb2.CHANNEL_TRADES)
    book = first.topic("SYN1USDT", pb2.CHANNEL_BOOK)
    first.send(subscribe=pb2.SubscribeRequest(topics=[trades, book]))
    epoch, last, books = 0, {}, {}
    while len(last) < 2:
        msg = first.next()
        kind = msg.WhichOneof("payload")
        if kind == "ack":
            assert msg.ack.epoch > 0, "every ack carries the server's epoch"
            epoch = msg.ack.epoch
            continue
        last[msg.topic.channel] = msg.sequence
    for _ in range(30):
        msg = first.next()
        last[msg.topic.channel] = msg.sequence
    first.close()
    time.sleep(0.5)  # the market moves on meanwhile

    second = Stream(stub, pb2)
    second.send(
        subscribe=pb2.SubscribeRequest(
            resume=[
                pb2.Resume(topic=t, epoch=epoch, after_sequence=last[t.channel])
                for t in (trades, book)
            ]
        )
    )
    # Each topic's ack comes before its replay.
    acked = set()
    resumed = {pb2.CHANNEL_TRADES: 0, pb2.CHANNEL_BOOK: 0}
    while min(resumed.values()) < 20:
        msg = second.next()
        channel = msg.topic.channel
        if msg.WhichOneof("payload") == "ack":
            assert msg.ack.result == pb2.Ack.RESULT_SUBSCRIBED
            assert msg.ack.resume == pb2.Ack.RESUME_REPLAYED, msg.ack.reason
            assert msg.ack.epoch == epoch
            acked.add(channel)
            continue
        assert channel in acked, "a topic's messages follow its ack"
        assert msg.sequence == last[channel] + 1, f"channel {channel}: {last[channel]} then {msg.sequence}"
        assert msg.WhichOneof("payload") in ("trade", "book_delta"), msg
        last[channel] = msg.sequence
        resumed[channel] += 1
    second.close()
