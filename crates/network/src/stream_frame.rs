//! Frames of the append stream, version 2: checksummed messages and progress signs.
//!
//! Each frame (inside the 4-byte length prefix) is a one-byte tag, then:
//! - [`TAG_MESSAGE`]: the CRC32C of the body (4 bytes, big-endian) and the bincode body: a request
//!   from the leader, an answer from the peer. A frame whose checksum does not match is refused:
//!   the connection is closed and the leader sends the request again on a new one, so a bit
//!   flipped on the way is never appended.
//! - [`TAG_PROGRESS`]: nothing more. The peer sends one every [`PROGRESS_INTERVAL`] while it
//!   is receiving or working on a request (a slow fsync, a large entry over a slow link), so
//!   that the leader can tell a slow peer, which is making progress, from a dead one, which is
//!   silent.
//!
//! Version 1 frames are the bare bincode body, answers only; a leader falls back to it with a
//! peer of an older release.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

/// A request or an answer.
pub(crate) const TAG_MESSAGE: u8 = 0;
/// The peer is receiving or working on a request.
pub(crate) const TAG_PROGRESS: u8 = 1;

/// How often a peer working on a request says so: fifty times within the silence after which the
/// leader gives up on it (see `append_pipe`).
pub(crate) const PROGRESS_INTERVAL: Duration = Duration::from_millis(20);

/// A decoded frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StreamFrame<'a> {
    /// A message's body, its checksum verified.
    Message(&'a [u8]),
    /// A progress sign.
    Progress,
}

/// Frames `body` as a message.
pub(crate) fn message(body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + body.len());
    frame.put_u8(TAG_MESSAGE);
    frame.put_u32(crc32c::crc32c(body));
    frame.put_slice(body);
    frame.freeze()
}

/// A progress frame.
pub(crate) fn progress() -> Bytes {
    Bytes::from_static(&[TAG_PROGRESS])
}

/// Decodes a version 2 frame; a bad checksum, an unknown tag or a short frame is an error.
pub(crate) fn decode(frame: &[u8]) -> Result<StreamFrame<'_>, String> {
    match frame.split_first() {
        Some((&TAG_MESSAGE, rest)) if rest.len() >= 4 => {
            let (sum, body) = rest.split_at(4);
            let expected = u32::from_be_bytes(sum.try_into().expect("four bytes"));
            let actual = crc32c::crc32c(body);
            if expected != actual {
                return Err(format!(
                    "frame checksum mismatch ({} bytes: crc32c {actual:08x}, sent as {expected:08x}): corrupted in transit",
                    body.len()
                ));
            }
            Ok(StreamFrame::Message(body))
        }
        Some((&TAG_PROGRESS, [])) => Ok(StreamFrame::Progress),
        Some((tag, _)) => Err(format!("malformed frame (tag {tag}, {} bytes)", frame.len())),
        None => Err("empty frame".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_progress_is_one_byte() {
        let frame = message(b"hello");
        assert_eq!(decode(&frame), Ok(StreamFrame::Message(b"hello")));
        assert_eq!(decode(&progress()), Ok(StreamFrame::Progress));
        assert_eq!(decode(&message(b"")), Ok(StreamFrame::Message(b"")));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let frame = message(b"an append request with entries");
        for byte in 1..frame.len() {
            let mut bad = frame.to_vec();
            bad[byte] ^= 0x10;
            assert!(decode(&bad).is_err(), "flip in byte {byte} not caught");
        }
    }

    #[test]
    fn short_and_unknown_frames_are_refused() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[TAG_MESSAGE, 1, 2]).is_err());
        assert!(decode(&[7, 0]).is_err());
        assert!(decode(&[TAG_PROGRESS, 0]).is_err());
    }
}
