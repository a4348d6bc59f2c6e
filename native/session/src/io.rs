//! The byte front ends of [`SessionWriter`]: [`std::io::Write`] for threads and
//! [`tokio::io::AsyncWrite`] for tasks. Both turn every write into `print` events (the input
//! is copied) and return the whole length; errors are [`WriterError`]s inside an
//! [`std::io::Error`] of kind `Other`.

use std::io;
use std::pin::Pin;
use std::sync::PoisonError;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

use super::writer::{SessionWriter, WriterError};

fn to_io(e: WriterError) -> io::Error {
    io::Error::other(e)
}

/// Blocking writes (at most the backoff timeout each); see [`SessionWriter`] for where they
/// may run.
impl io::Write for SessionWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_blocking(buf).map_err(to_io)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// As for `SessionWriter`, through a shared reference.
impl io::Write for &SessionWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_blocking(buf).map_err(to_io)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A write that returns `Pending` keeps its copy of the bytes and finishes it on the next
/// poll (callers poll again with the same buffer, as `AsyncWrite` expects). Flush and
/// shutdown do nothing: finish the recording with [`SessionWriter::complete`] or
/// [`SessionWriter::close`].
impl AsyncWrite for SessionWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let shared = this.shared.clone();
        let slot = this
            .pending_write
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let fut = slot.get_or_insert_with(|| {
            let data = buf.to_vec();
            Box::pin(async move { shared.write(&data).await.map_err(to_io) })
        });
        match fut.as_mut().poll(cx) {
            Poll::Ready(r) => {
                *slot = None;
                Poll::Ready(r)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
