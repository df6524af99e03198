//! The connection's byte stream (`IdleIo`): the idle timeout, and the bytes
//! the lean path read before handing a connection to hyper.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// A TCP stream that fails once no byte has moved either way for
/// `timeout`; hyper then closes the connection. hyper has no idle timeout
/// of its own.
///
/// Traffic only notes the time (`last`, by the kernel's coarse monotonic
/// clock: a few milliseconds of resolution, a fraction of the cost of a
/// precise reading); the timer is re-armed when it fires early, not on
/// every read and write, which keeps the timer wheel out of the
/// per-request path. Vectored writes pass through, so hyper
/// sends a response's head and its shared body with one `writev` instead
/// of copying the body into its own buffer.
pub(super) struct IdleIo {
    inner: TcpStream,
    /// Bytes read before (by the lean path), given back before reading on.
    read_back: Bytes,
    timeout: Duration,
    /// The coarse clock's reading at the last traffic.
    last: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl IdleIo {
    pub(super) fn new(inner: TcpStream, timeout: Duration) -> IdleIo {
        IdleIo {
            inner,
            read_back: Bytes::new(),
            timeout,
            last: crate::coarse::monotonic(),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// A new timeout, no shorter than the one set before (the timer armed
    /// for the old one fires early and is re-armed for the new).
    pub(super) fn set_timeout(&mut self, timeout: Duration) {
        debug_assert!(timeout >= self.timeout);
        self.timeout = timeout;
    }

    /// Makes `read` the first bytes read from here on (what the lean path
    /// had read when it handed the connection to hyper).
    pub(super) fn read_back(&mut self, read: Bytes) {
        self.read_back = read;
    }

    /// A write by a system call the stream does not offer (`op`, given
    /// the socket: `send` with flags, `sendfile`), when the socket takes
    /// it, under the idle timeout as any write.
    pub(super) async fn write_with(
        &mut self,
        mut op: impl FnMut(&TcpStream) -> std::io::Result<usize>,
    ) -> std::io::Result<usize> {
        std::future::poll_fn(|cx| loop {
            match self.inner.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return self.after_write(cx, Poll::Pending),
            }
            let inner = &self.inner;
            match inner.try_io(tokio::io::Interest::WRITABLE, || op(inner)) {
                // Not writable after all (`try_io` has cleared the
                // readiness): wait for the socket again.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                done => return self.after_write(cx, Poll::Ready(done)),
            }
        })
        .await
    }

    fn touch(&mut self) {
        self.last = crate::coarse::monotonic();
    }

    /// Notes traffic after a write, or fails a write that has waited
    /// longer than the idle timeout.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                self.touch();
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            other => other,
        }
    }

    /// Whether `timeout` has passed since the last traffic. A timer that
    /// fires while traffic has moved since it was set is re-armed for the
    /// new deadline (and polled, so this task wakes then).
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let quiet = crate::coarse::monotonic().saturating_sub(self.last);
            if quiet >= self.timeout {
                return true;
            }
            self.deadline
                .as_mut()
                .reset(Instant::now() + (self.timeout - quiet));
        }
    }
}

fn idle_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle for too long")
}

impl AsyncRead for IdleIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.read_back.is_empty() {
            let n = self.read_back.len().min(buf.remaining());
            buf.put_slice(&self.read_back[..n]);
            self.read_back.advance(n);
            if self.read_back.is_empty() {
                // Lets go of the lean path's read buffer, which the empty
                // slice would keep for the connection's life.
                self.read_back = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
