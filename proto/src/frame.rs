//! Length-prefixed JSON frames: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! The length is checked against [`MAX_FRAME_LEN`] before any buffer is allocated, so a
//! hostile or confused peer cannot make either side reserve memory it names.

use std::fmt;
use std::io::{self, Read, Write};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest frame body either side accepts: 1 MiB. A SAML login exchange is a few kB.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug)]
pub enum FrameError {
    /// The socket failed.
    Io(io::Error),
    /// The peer announced a frame larger than [`MAX_FRAME_LEN`].
    TooLarge {
        /// The announced length.
        len: usize,
    },
    /// The connection ended in the middle of a frame.
    Truncated,
    /// The body is not the JSON we expect.
    Malformed(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Io(e) => write!(f, "socket error: {e}"),
            FrameError::TooLarge { len } => write!(
                f,
                "frame of {len} bytes is larger than the limit of {MAX_FRAME_LEN} bytes"
            ),
            FrameError::Truncated => f.write_str("connection closed in the middle of a frame"),
            FrameError::Malformed(e) => write!(f, "malformed message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            FrameError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Truncated
        } else {
            FrameError::Io(e)
        }
    }
}

/// Checks a frame header and returns the body length it announces.
pub fn decode_header(header: [u8; 4]) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    Ok(len)
}

/// Serializes a message into one frame, header included.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge { len });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Writes one frame and flushes.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let buf = encode_frame(msg)?;
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame. `Ok(None)` is a clean end of stream before the first header byte;
/// an end of stream anywhere later is [`FrameError::Truncated`].
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut header = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match r.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(FrameError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = decode_header(header)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    decode_body(&mut body).map(Some)
}

/// Parses a frame's body (its header already checked with [`decode_header`]) and wipes it:
/// frames carry passwords, codes and credentials. The one decoder for both ends, so that a
/// bad frame gets the same error, which never quotes the frame, wherever it is read.
pub fn decode_body<T: DeserializeOwned>(body: &mut [u8]) -> Result<T, FrameError> {
    let message =
        serde_json::from_slice(body).map_err(|e| FrameError::Malformed(describe_json_error(&e)));
    body.fill(0);
    message
}

/// What is wrong with a frame's JSON, without quoting it: serde_json's own text can include a
/// whole string value from the input (`invalid type: string "…"`), and frames carry secrets.
fn describe_json_error(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "JSON of an unexpected shape (another version?)",
        serde_json::error::Category::Eof => "JSON cut short",
        serde_json::error::Category::Io => "unreadable",
    };
    // Internally tagged enums buffer their content, so serde_json may not know a position.
    match e.line() {
        0 => what.to_string(),
        line => format!("{what} at line {line}, column {}", e.column()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response};
    use std::io::Cursor;

    #[test]
    fn round_trip() {
        let req = Request::Status {
            account: Some("a".into()),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(&buf[..4], &(buf.len() as u32 - 4).to_be_bytes());
        let back: Request = read_frame(&mut Cursor::new(buf)).unwrap().unwrap();
        assert_eq!(back, req);
    }

    #[test]
    fn clean_eof_is_none() {
        let r: Option<Request> = read_frame(&mut Cursor::new(Vec::new())).unwrap();
        assert!(r.is_none());
    }

    #[test]
    fn eof_inside_header_or_body_is_truncated() {
        let err = read_frame::<_, Request>(&mut Cursor::new(vec![0, 0])).unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
        let err = read_frame::<_, Request>(&mut Cursor::new(vec![0, 0, 0, 10, b'{'])).unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
    }

    /// A reader that hands out a huge header and would hand out endless bytes after it: if the
    /// decoder allocated or read the announced length, this test would take gigabytes.
    struct HugeFrame {
        sent_header: bool,
    }
    impl Read for HugeFrame {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if !self.sent_header {
                self.sent_header = true;
                buf[..4].copy_from_slice(&u32::MAX.to_be_bytes());
                return Ok(4);
            }
            panic!("the body of an oversized frame must not be read");
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_reading_the_body() {
        let err = read_frame::<_, Request>(&mut HugeFrame { sent_header: false }).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len } if len == u32::MAX as usize));
        let limit = MAX_FRAME_LEN as u32;
        assert!(decode_header(limit.to_be_bytes()).is_ok());
        assert!(decode_header((limit + 1).to_be_bytes()).is_err());
    }

    #[test]
    fn garbage_body_is_malformed() {
        let mut buf = 5u32.to_be_bytes().to_vec();
        buf.extend_from_slice(b"\xff\x00abc");
        let err = read_frame::<_, Response>(&mut Cursor::new(buf)).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{err}");
    }

    #[test]
    fn malformed_frames_never_quote_their_content() {
        // A secret where a number belongs: serde_json's message would quote it.
        let body = br#"{"type":"hello","protocol_version":"hunter2","daemon_version":"x","pid":1}"#;
        let mut buf = (body.len() as u32).to_be_bytes().to_vec();
        buf.extend_from_slice(body);
        let err = read_frame::<_, Response>(&mut Cursor::new(buf)).unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("unexpected shape"), "{text}");
    }

    #[test]
    fn encoding_refuses_oversized_messages() {
        let big = Request::Status {
            account: Some("x".repeat(MAX_FRAME_LEN)),
        };
        assert!(matches!(
            encode_frame(&big),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
