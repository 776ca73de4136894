"""One Python consumer, two venue families at once: the demo's Binance and Bybit
exchanges through one Subscribe stream, each topic with its own snapshot and contiguous
sequence, the instruments listed with what their venue says of them."""

from decimal import Decimal

import grpc

from test_client import Stream, apply


def test_one_stream_serves_two_venue_families(demo_server, pb):
    pb2, pb2_grpc = pb
    channel = grpc.insecure_channel(demo_server)
    stub = pb2_grpc.MarketDataStub(channel)

    listed = stub.ListInstruments(pb2.ListInstrumentsRequest(), timeout=10).instruments
    venues = {i.venue for i in listed}
    assert {"binance_spot", "bybit_linear"} <= venues, venues
    bybit = next(i for i in listed if i.venue == "bybit_linear" and i.symbol == "SYN0USDT")
    assert bybit.normalized_name == "SYN0-USDT-PERP", bybit
    assert bybit.kind == "perpetual" and bybit.quantity_unit == "base", bybit
    assert Decimal(bybit.tick_size) > 0 and Decimal(bybit.lot_size) > 0, bybit

    s = Stream(stub, pb2)
    books = {
        ("binance_spot", "SYN0USDT"): s.topic("SYN0USDT", pb2.CHANNEL_BOOK, venue="binance_spot"),
        # By its normalized name: messages still name the exchange symbol.
        ("bybit_linear", "SYN0USDT"): s.topic("SYN0-USDT-PERP", pb2.CHANNEL_BOOK, venue="bybit_linear"),
    }
    trades = s.topic("SYN0USDT", pb2.CHANNEL_TRADES, venue="bybit_linear")
    s.send(subscribe=pb2.SubscribeRequest(topics=list(books.values()) + [trades]))

    acks = 0
    state = {}  # (venue, symbol, channel) -> [last sequence, book]
    deltas = {key: 0 for key in books}
    trade_count = 0
    while acks < 3 or min(deltas.values()) < 20 or trade_count < 5:
        msg = s.next()
        kind = msg.WhichOneof("payload")
        key = (msg.topic.venue, msg.topic.symbol, msg.topic.channel)
        if kind == "ack":
            assert msg.ack.result == pb2.Ack.RESULT_SUBSCRIBED, msg.ack
            acks += 1
            continue
        if key in state:
            assert msg.sequence == state[key][0] + 1, f"{key}: sequence jumped"
        if kind == "book_snapshot":
            book = {}
            apply(book, msg.book_snapshot.bids)
            state[key] = [msg.sequence, book]
        elif kind == "book_delta":
            assert key in state, f"{key}: delta before snapshot"
            apply(state[key][1], msg.book_delta.bids)
            deltas[(msg.topic.venue, msg.topic.symbol)] += 1
            state[key][0] = msg.sequence
        elif kind == "trade":
            assert msg.topic.venue == "bybit_linear"
            assert Decimal(msg.trade.price) > 0 and Decimal(msg.trade.quantity) > 0
            trade_count += 1
            state.setdefault(key, [msg.sequence, None])[0] = msg.sequence
    s.close()
    channel.close()
