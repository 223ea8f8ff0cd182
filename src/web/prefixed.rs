//! A stream that first replays bytes already read from it: the HTTPS port
//! reads the first decrypted bytes to tell TURN from HTTP, and hands HTTP
//! connections to hyper with those bytes intact.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// `inner` with `prefix` read back in front of it.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

/// Reads up to `n` bytes (fewer only at end of stream).
pub async fn read_up_to<S: AsyncRead + Unpin>(stream: &mut S, n: usize) -> io::Result<Vec<u8>> {
    let mut first = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match stream.read(&mut first[got..]).await? {
            0 => break,
            k => got += k,
        }
    }
    first.truncate(got);
    Ok(first)
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let rest = &this.prefix[this.at..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn replays_the_prefix_then_the_rest() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        drop(a);
        let mut b = b;
        let first = read_up_to(&mut b, 8).await.unwrap();
        assert_eq!(first, b"GET / HT");
        let mut all = String::new();
        Prefixed::new(first, b)
            .read_to_string(&mut all)
            .await
            .unwrap();
        assert_eq!(all, "GET / HTTP/1.1\r\n");
        let (a, mut b) = tokio::io::duplex(64);
        drop(a);
        assert!(read_up_to(&mut b, 8).await.unwrap().is_empty());
    }
}
