//! How the client reaches a TURN server: a connected UDP socket, or a
//! stream (TCP or TLS) carrying STUN and ChannelData back to back.

use super::message as msg;
use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

/// Any byte stream to the server.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

type Boxed = Box<dyn Stream>;

pub enum Link {
    Udp(UdpSocket),
    Stream {
        rd: Mutex<(ReadHalf<Boxed>, BytesMut)>,
        wr: Mutex<WriteHalf<Boxed>>,
    },
}

impl Link {
    pub fn stream(s: impl Stream + 'static) -> Link {
        let (rd, wr) = tokio::io::split(Box::new(s) as Boxed);
        Link::Stream {
            rd: Mutex::new((rd, BytesMut::with_capacity(4096))),
            wr: Mutex::new(wr),
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Link::Stream { .. })
    }

    /// Sends one message (ChannelData already padded for streams).
    pub async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Link::Udp(s) => s.send(bytes).await.map(|_| ()),
            Link::Stream { wr, .. } => {
                let mut wr = wr.lock().await;
                wr.write_all(bytes).await?;
                wr.flush().await
            }
        }
    }

    /// Receives one message into `buf`; cancel-safe (a stream keeps what
    /// it read of an unfinished message).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Udp(s) => s.recv(buf).await,
            Link::Stream { rd, .. } => {
                let mut guard = rd.lock().await;
                let (rd, pending) = &mut *guard;
                loop {
                    match msg::frame(pending, true) {
                        Ok(Some((_, len))) => {
                            let n = len.min(buf.len());
                            buf[..n].copy_from_slice(&pending[..n]);
                            pending.advance(len);
                            return Ok(n);
                        }
                        Ok(None) => {}
                        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                    }
                    if rd.read_buf(pending).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
            }
        }
    }
}
