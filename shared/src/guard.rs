//! What keeps a connection from exhausting a node: a frame must arrive whole within a time, an
//! idle connection is closed, and no buffer is reserved from an announced length alone.
//!
//! ```text
//!  Stream ─► Guarded: follows the 4-byte length prefixes; a frame must arrive whole within
//!             the frame timeout and is handed on only then; no frame for the idle timeout
//!             closes the connection
//!         ─► tarpc's LengthDelimitedCodec (which would reserve an announced length at once)
//! ```

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf as _, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

/// A server connection under a frame timeout and an idle timeout, which hands a frame to its
/// reader only once the frame has arrived whole: the reader's codec (tarpc's, which reserves the
/// whole announced length when it sees a header) never sees a header before its body, so memory
/// follows the bytes that arrived, not the lengths announced.
pub struct Guarded<S> {
    inner: S,
    max_frame: usize,
    /// Bytes of unfinished frames held by every guarded connection of the node, and the most
    /// they may hold: a connection whose next bytes would go over is closed.
    budget: Budget,
    /// The frame being received: its header and the part of its body that arrived.
    partial: Vec<u8>,
    /// Complete frames not yet read.
    ready: BytesMut,
    frame_timeout: Duration,
    idle_timeout: Duration,
    /// When the current frame must be complete, or when the idle connection is closed.
    deadline: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    /// Guards `inner`: frames of at most `max_frame` bytes; a frame, from its first byte, must
    /// arrive within `frame_timeout`; a connection with no frame in progress for
    /// `idle_timeout` is closed.
    pub fn new(
        inner: S,
        max_frame: usize,
        frame_timeout: Duration,
        idle_timeout: Duration,
        budget: Budget,
    ) -> Self {
        Self {
            inner,
            max_frame,
            budget,
            partial: Vec::new(),
            ready: BytesMut::new(),
            frame_timeout,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
        }
    }

    fn between_frames(&self) -> bool {
        self.partial.is_empty()
    }

    /// Takes `data` (bytes just read) into the frame being received, moving complete frames
    /// to `ready` and re-arming the deadline when a frame starts or ends.
    fn take(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.partial.is_empty() {
                let at = Instant::now() + self.frame_timeout;
                self.deadline.as_mut().reset(at);
            }
            if self.partial.len() < 4 {
                let take = (4 - self.partial.len()).min(data.len());
                self.partial.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.partial.len() < 4 {
                    break;
                }
            }
            let len = u32::from_be_bytes([
                self.partial[0],
                self.partial[1],
                self.partial[2],
                self.partial[3],
            ]) as usize;
            if len > self.max_frame {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "frame of {len} bytes, over the limit of {} bytes",
                        self.max_frame
                    ),
                ));
            }
            let want = 4 + len - self.partial.len();
            let take = want.min(data.len());
            let needed = self.partial.len() + take;
            if needed > self.partial.capacity() {
                // Grow by doubling, never past this frame, and count what is reserved (not
                // only what arrived) against the node's budget.
                let cap = self.partial.capacity();
                let new_cap = needed.max(cap.saturating_mul(2)).min(4 + len);
                self.budget.take(counted(new_cap) - counted(cap))?;
                self.partial.reserve_exact(new_cap - self.partial.len());
            }
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.partial.len() == 4 + len {
                self.ready.extend_from_slice(&self.partial);
                self.budget.give_back(counted(self.partial.capacity()));
                self.partial = Vec::new();
                let at = Instant::now() + self.idle_timeout;
                self.deadline.as_mut().reset(at);
            }
        }
        Ok(())
    }
}

impl<S> Drop for Guarded<S> {
    fn drop(&mut self) {
        self.budget.give_back(counted(self.partial.capacity()));
    }
}

/// Bytes of each unfinished frame that do not count against the budget: small requests (most
/// of them) never touch it, so a budget spent by large stalled frames closes those, not them.
pub const FREE_PER_FRAME: usize = 16 * 1024;

fn counted(capacity: usize) -> usize {
    capacity.saturating_sub(FREE_PER_FRAME)
}

/// The node-wide allowance of bytes held in unfinished frames (shared by its connections).
#[derive(Clone, Debug)]
pub struct Budget {
    held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
}

impl Budget {
    /// At most `max` bytes of unfinished frames, across every connection sharing it.
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            held: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max,
        }
    }

    /// Bytes held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::Acquire)
    }

    fn take(&self, n: usize) -> io::Result<()> {
        use std::sync::atomic::Ordering;
        let before = self.held.fetch_add(n, Ordering::AcqRel);
        if before + n > self.max {
            self.held.fetch_sub(n, Ordering::AcqRel);
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!(
                    "the node holds {before} bytes of unfinished requests, its limit is {} \
                     (--max-partial-frames-mib): this connection is closed",
                    self.max
                ),
            ));
        }
        Ok(())
    }

    fn give_back(&self, n: usize) {
        self.held.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 8 * 1024;

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            // On the stack: an idle connection holds no read buffer of its own.
            let mut scratch = [0u8; READ_CHUNK];
            let mut chunk = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(())) => {
                    let n = chunk.filled().len();
                    if n == 0 {
                        // End of stream (a partial frame is dropped with it).
                        return Poll::Ready(Ok(()));
                    }
                    this.take(&scratch[..n])?;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if this.deadline.as_mut().poll(cx).is_ready() {
                        let why = if this.between_frames() {
                            format!("idle for {} s", this.idle_timeout.as_secs())
                        } else {
                            format!(
                                "a frame did not arrive whole within {} s",
                                this.frame_timeout.as_secs()
                            )
                        };
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

    #[tokio::test]
    async fn a_frame_is_handed_on_only_whole_and_over_limit_is_refused() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut g = Guarded::new(
            server,
            8,
            Duration::from_secs(5),
            Duration::from_secs(60),
            Budget::new(1 << 20),
        );
        client.write_all(&3u32.to_be_bytes()).await.expect("write");
        client.write_all(b"ab").await.expect("write");
        let mut buf = [0u8; 64];
        // Not yet: the frame is not whole.
        let early = tokio::time::timeout(Duration::from_millis(50), g.read(&mut buf)).await;
        assert!(early.is_err(), "a partial frame was handed on");
        client.write_all(b"c").await.expect("write");
        let n = g.read(&mut buf).await.expect("the frame");
        assert_eq!(&buf[..n], &[0, 0, 0, 3, b'a', b'b', b'c']);
        client.write_all(&9u32.to_be_bytes()).await.expect("write");
        let e = g.read(&mut buf).await.expect_err("over the limit");
        assert!(e.to_string().contains("over the limit of 8"), "{e}");
    }

    #[tokio::test]
    async fn unfinished_frames_share_one_budget_and_give_it_back() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let budget = Budget::new(200_000);
        let (mut a, sa) = tokio::io::duplex(1 << 20);
        let (mut b, sb) = tokio::io::duplex(1 << 20);
        let t = Duration::from_secs(5);
        let idle = Duration::from_secs(60);
        let mut ga = Guarded::new(sa, 1_000_000, t, idle, budget.clone());
        let mut gb = Guarded::new(sb, 1_000_000, t, idle, budget.clone());
        let mut buf = [0u8; 2048];
        // A holds 80 KB of an unfinished 500 KB frame (its reservation, past the free 16 KiB, counted).
        a.write_all(&500_000u32.to_be_bytes()).await.expect("write");
        a.write_all(&vec![1u8; 80_000]).await.expect("write");
        let early = tokio::time::timeout(Duration::from_millis(50), ga.read(&mut buf)).await;
        assert!(early.is_err(), "{early:?}");
        let held = budget.held();
        assert!(held > 0 && held <= 2 * 80_004, "{held}");
        // B's 120 KB more would go over: B is closed, A keeps its share.
        b.write_all(&500_000u32.to_be_bytes()).await.expect("write");
        b.write_all(&vec![2u8; 120_000]).await.expect("write");
        let e = gb.read(&mut buf).await.expect_err("over budget");
        assert!(e.to_string().contains("--max-partial-frames-mib"), "{e}");
        // The node then drops B's connection, and what it held with it.
        drop(gb);
        assert_eq!(budget.held(), held);
        drop(ga);
        assert_eq!(budget.held(), 0, "a closed connection gives its bytes back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_frame_and_an_idle_connection_time_out() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(
            server,
            1024,
            Duration::from_secs(2),
            Duration::from_secs(60),
            Budget::new(1 << 20),
        );
        // Half a frame, then nothing: timed out after the frame timeout.
        client.write_all(&10u32.to_be_bytes()).await.expect("write");
        client.write_all(b"abc").await.expect("write");
        let mut buf = [0u8; 64];
        let started = Instant::now();
        let e = guarded.read(&mut buf).await.expect_err("times out");
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("did not arrive whole"), "{e}");
        assert!(started.elapsed() <= Duration::from_secs(3));

        // Whole frames, then silence: closed as idle after the idle timeout, not before.
        let (mut client, server) = tokio::io::duplex(1024);
        let mut guarded = Guarded::new(
            server,
            1024,
            Duration::from_secs(2),
            Duration::from_secs(60),
            Budget::new(1 << 20),
        );
        client.write_all(&2u32.to_be_bytes()).await.expect("write");
        client.write_all(b"ok").await.expect("write");
        let n = guarded.read(&mut buf).await.expect("the frame");
        assert_eq!(n, 6);
        let started = Instant::now();
        let e = guarded.read(&mut buf).await.expect_err("idle");
        assert!(e.to_string().contains("idle"), "{e}");
        assert!(started.elapsed() >= Duration::from_secs(59));
    }
}
