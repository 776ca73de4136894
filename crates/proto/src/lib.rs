//! The gRPC contract of Raven, generated from `proto/raven/v1/raven.proto`.
//!
//! [`pb`] holds the messages and the client. [`server`] holds the service trait whose
//! `Subscribe` stream carries [`OutboundMessage`]: the body of a `ServerMessage`
//! encoded once by the hub and shared by every subscriber (a reference-counted
//! [`Bytes`]), with only the send time written per subscriber when the transport
//! takes the message.

use bytes::{BufMut, Bytes};

pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/raven.v1.rs"));
}

pub mod server {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/server/raven.v1.rs"));
}

/// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/raven_descriptor.bin"));

/// Field number of `ServerMessage.send_time_ns`.
const SEND_TIME_FIELD: u32 = 5;

/// A `ServerMessage` whose body (every field but `send_time_ns`) was encoded once.
///
/// Protobuf fields may appear in any order and a message is the concatenation of its
/// fields, so writing `send_time_ns` followed by the shared body bytes is a valid
/// encoding of the whole `ServerMessage`. The body must not contain `send_time_ns`
/// itself (encode it with that field left at 0).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboundMessage {
    pub send_time_ns: u64,
    pub body: Bytes,
}

impl OutboundMessage {
    /// Encodes a `ServerMessage` body once; `send_time_ns` in `msg` must be 0.
    pub fn encode_body(msg: &pb::ServerMessage) -> Bytes {
        debug_assert_eq!(msg.send_time_ns, 0, "send time is written per subscriber");
        Bytes::from(prost::Message::encode_to_vec(msg))
    }
}

impl prost::Message for OutboundMessage {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.send_time_ns != 0 {
            prost::encoding::uint64::encode(SEND_TIME_FIELD, &self.send_time_ns, buf);
        }
        buf.put_slice(&self.body);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        // The server never decodes its own outbound messages; skip whatever arrives.
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        let time = if self.send_time_ns != 0 {
            prost::encoding::uint64::encoded_len(SEND_TIME_FIELD, &self.send_time_ns)
        } else {
            0
        };
        time + self.body.len()
    }

    fn clear(&mut self) {
        self.send_time_ns = 0;
        self.body = Bytes::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn outbound_message_decodes_as_server_message() {
        let body = pb::ServerMessage {
            topic: Some(pb::Topic {
                venue: "binance_spot".into(),
                symbol: "BTCUSDT".into(),
                channel: 1,
                depth: 0,
            }),
            sequence: 42,
            exchange_time_ns: 7,
            receive_time_ns: 8,
            send_time_ns: 0,
            replayed: false,
            payload: Some(pb::server_message::Payload::Heartbeat(pb::Heartbeat {})),
        };
        let out = OutboundMessage {
            send_time_ns: 99,
            body: OutboundMessage::encode_body(&body),
        };
        let decoded = pb::ServerMessage::decode(out.encode_to_vec().as_slice()).unwrap();
        assert_eq!(
            decoded,
            pb::ServerMessage {
                send_time_ns: 99,
                ..body
            }
        );
    }
}
