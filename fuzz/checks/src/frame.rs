use std::fmt::Debug;
use std::io::{self, Read};

use samld_proto::{
    FrameError, MAX_FRAME_LEN, Request, Response, decode_header, encode_frame, read_frame,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Hands out `data` in reads of at most `chunk` bytes, failing every other read with
/// `Interrupted` when `interrupt` is set.
struct Chunked<'a> {
    data: &'a [u8],
    chunk: usize,
    interrupt: bool,
    interrupted_last: bool,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.interrupt && !self.interrupted_last {
            self.interrupted_last = true;
            return Err(io::ErrorKind::Interrupted.into());
        }
        self.interrupted_last = false;
        let n = buf.len().min(self.chunk).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A comparable summary of one `read_frame` result.
#[derive(Debug, PartialEq)]
enum Outcome<T> {
    Frame(T),
    End,
    TooLarge(usize),
    Truncated,
    Malformed(String),
}

fn outcome<T>(result: Result<Option<T>, FrameError>) -> Outcome<T> {
    match result {
        Ok(Some(msg)) => Outcome::Frame(msg),
        Ok(None) => Outcome::End,
        Err(FrameError::TooLarge { len }) => Outcome::TooLarge(len),
        Err(FrameError::Truncated) => Outcome::Truncated,
        Err(FrameError::Malformed(text)) => Outcome::Malformed(text),
        // Neither reader here fails other than with Interrupted, which must be retried.
        Err(FrameError::Io(e)) => panic!("I/O error from an in-memory reader: {e}"),
    }
}

/// Reads frames until the stream ends or fails, the way a peer would.
fn read_all<T, R>(reader: &mut R) -> Vec<Outcome<T>>
where
    T: DeserializeOwned,
    R: Read,
{
    let mut outcomes = Vec::new();
    loop {
        let next = outcome(read_frame::<_, T>(reader));
        let done = !matches!(next, Outcome::Frame(_));
        outcomes.push(next);
        if done {
            return outcomes;
        }
    }
}

fn check<T>(stream: &[u8], chunk: usize, interrupt: bool)
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let whole = read_all::<T, _>(&mut &stream[..]);
    let mut chunked = Chunked {
        data: stream,
        chunk,
        interrupt,
        interrupted_last: false,
    };
    assert_eq!(whole, read_all::<T, _>(&mut chunked));

    // The first frame's fate follows from its header alone when the header is bad or the
    // body is missing.
    if let Some(header) = stream.first_chunk::<4>() {
        let announced = u32::from_be_bytes(*header) as usize;
        let available = stream.len() - 4;
        match decode_header(*header) {
            Ok(len) => {
                assert!(len <= MAX_FRAME_LEN && len == announced);
                if available < len {
                    assert_eq!(whole[0], Outcome::Truncated);
                }
            }
            Err(FrameError::TooLarge { len }) => {
                assert!(len > MAX_FRAME_LEN && len == announced);
                assert_eq!(whole[0], Outcome::TooLarge(announced));
            }
            Err(other) => panic!("decode_header failed with {other}"),
        }
    } else if !stream.is_empty() {
        assert_eq!(whole[0], Outcome::Truncated);
    }

    for decoded in &whole {
        if let Outcome::Frame(msg) = decoded {
            let frame = encode_frame(msg).expect("a decoded message encodes");
            let back = read_frame::<_, T>(&mut &frame[..]).expect("its encoding decodes");
            assert_eq!(back.as_ref(), Some(msg));
        }
    }
}

/// The frame decoder both ends of the socket use, on a stream of one or more frames.
///
/// The first input byte picks how the stream is cut into reads (as a socket delivers it, with
/// `Interrupted` in between), the rest is the stream. Checks: no panic; the same answers
/// however the stream is cut; an announced length over the limit is refused before anything
/// is read or allocated for it; whatever decodes, encodes and decodes back to itself.
pub fn frame(data: &[u8]) {
    let Some((&shape, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(shape & 0x7f).max(1);
    let interrupt = shape & 0x80 != 0;
    check::<Request>(stream, chunk, interrupt);
    check::<Response>(stream, chunk, interrupt);
}
