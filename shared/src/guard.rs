//! What keeps a connection from exhausting a node: a frame must arrive whole within a time, an
//! idle connection is closed, no buffer is reserved from an announced length alone, and what
//! the node holds of unfinished frames has a node-wide bound: a large frame that would go over
//! it waits, unread, until another's bytes are given back (its frame timeout still runs).
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

use std::{collections::VecDeque, sync::Arc};

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tokio_util::sync::PollSemaphore;

/// A server connection under a frame timeout and an idle timeout, which hands a frame to its
/// reader only once the frame has arrived whole: the reader's codec (tarpc's, which reserves the
/// whole announced length when it sees a header) never sees a header before its body, so memory
/// follows the bytes that arrived, not the lengths announced.
///
/// An unfinished frame is held in chunks of at most `CHUNK` bytes, each reserved as the bytes
/// arrive: a large frame is never moved to a larger buffer as it grows (which would copy it and
/// fault in fresh pages in one go, holding up every other connection of the worker).
pub struct Guarded<S> {
    inner: S,
    max_frame: usize,
    /// Bytes of unfinished frames held by every guarded connection of the node, and the most
    /// they may hold: a connection whose next bytes would go over waits, unread.
    budget: Budget,
    /// The header of the next frame, as far as it arrived.
    head: [u8; 4],
    head_len: usize,
    /// The frame being received, once its header is whole.
    frame: Option<Partial>,
    /// Complete frames not yet read, in chunks.
    ready: VecDeque<Bytes>,
    frame_timeout: Duration,
    idle_timeout: Duration,
    /// When the current frame must be complete, or when the idle connection is closed.
    deadline: Pin<Box<Sleep>>,
    /// The turn this connection gave up after reading `READ_PER_POLL`, until it comes back.
    yielded: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

/// A frame whose header arrived and whose body has not all arrived.
struct Partial {
    /// Header and body: 4 + the announced length.
    size: usize,
    /// Bytes of it that arrived.
    got: usize,
    chunks: Vec<BytesMut>,
    /// The chunks' capacity; what is past `FREE_PER_FRAME` is held from the budget.
    reserved: usize,
    /// What it holds of the budget (given back when the frame is done or dropped).
    held: Option<OwnedSemaphorePermit>,
    /// Waits for the budget, once the frame needs more than its free bytes.
    waiting: Option<PollSemaphore>,
}

/// Most bytes of one chunk of an unfinished frame.
const CHUNK: usize = 64 * 1024;

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
            head: [0; 4],
            head_len: 0,
            frame: None,
            ready: VecDeque::new(),
            frame_timeout,
            idle_timeout,
            deadline: Box::pin(tokio::time::sleep(idle_timeout)),
            yielded: None,
        }
    }

    /// No frame is being received (the last one, if any, arrived whole).
    #[must_use]
    pub fn between_frames(&self) -> bool {
        self.head_len == 0 && self.frame.is_none()
    }

    /// Takes `data` (bytes just read) into the frame being received, moving complete frames
    /// to `ready` and re-arming the deadline when a frame starts or ends.
    fn take(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(frame) = self.frame.as_mut() else {
                if self.head_len == 0 {
                    let at = Instant::now() + self.frame_timeout;
                    self.deadline.as_mut().reset(at);
                }
                let n = (4 - self.head_len).min(data.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&data[..n]);
                self.head_len += n;
                data = &data[n..];
                if self.head_len < 4 {
                    break;
                }
                let len = u32::from_be_bytes(self.head) as usize;
                if len > self.max_frame {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "frame of {len} bytes, over the limit of {} bytes",
                            self.max_frame
                        ),
                    ));
                }
                let mut frame = Partial {
                    size: 4 + len,
                    got: 0,
                    chunks: Vec::new(),
                    reserved: 0,
                    held: None,
                    waiting: None,
                };
                let head = self.head;
                frame.append_free(&head)?;
                self.frame = Some(frame);
                continue;
            };
            let n = (frame.size - frame.got).min(data.len());
            frame.append_free(&data[..n])?;
            data = &data[n..];
            if frame.got == frame.size {
                self.finish_frame();
            }
        }
        Ok(())
    }

    /// The frame being received arrived whole: on to `ready`, its bytes given back to the
    /// budget, and the idle deadline armed.
    fn finish_frame(&mut self) {
        if let Some(done) = self.frame.take() {
            // Its permit, dropped with it, gives its bytes back to the budget.
            self.ready
                .extend(done.chunks.into_iter().map(BytesMut::freeze));
        }
        self.head_len = 0;
        let at = Instant::now() + self.idle_timeout;
        self.deadline.as_mut().reset(at);
    }
}

impl Partial {
    /// Stores `data` (no more than the frame lacks) in the frame's free bytes: what is read
    /// through the stack (a header and what follows it in the same read, at most
    /// `READ_CHUNK`) always fits in them, so it never waits for the budget.
    fn append_free(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Poll::Ready(chunk) = self.poll_spare_chunk(None, None) else {
                return Err(io::Error::other(
                    "more bytes read through the stack than a frame's free bytes",
                ));
            };
            let chunk = chunk?;
            let n = (chunk.capacity() - chunk.len()).min(data.len());
            chunk.extend_from_slice(&data[..n]);
            self.got += n;
            data = &data[n..];
        }
        Ok(())
    }

    /// The chunk the next bytes go to, with room for at least one: a new one when the last is
    /// full, the first of at most `FREE_PER_FRAME` bytes, the others of at most `CHUNK`, none
    /// past the frame's end. What a chunk reserves past `FREE_PER_FRAME` is held from the
    /// budget first; `Pending` while the budget has not that much left (or with no budget
    /// given). Only called while the frame lacks bytes.
    fn poll_spare_chunk(
        &mut self,
        budget: Option<&Budget>,
        cx: Option<&mut Context<'_>>,
    ) -> Poll<io::Result<&mut BytesMut>> {
        let full = self.chunks.last().is_none_or(|c| c.len() == c.capacity());
        if full {
            let left = self.size - self.reserved;
            let cap = if self.reserved == 0 {
                left.min(FREE_PER_FRAME)
            } else {
                left.min(CHUNK)
            };
            let counts = counted(self.reserved + cap) - counted(self.reserved);
            if counts > 0 {
                let (Some(budget), Some(cx)) = (budget, cx) else {
                    return Poll::Pending;
                };
                let waiting = self
                    .waiting
                    .get_or_insert_with(|| PollSemaphore::new(Arc::clone(&budget.bytes)));
                let Some(permit) =
                    std::task::ready!(waiting.poll_acquire_many(cx, chunk_permits(counts)))
                else {
                    return Poll::Ready(Err(io::Error::other("the node's budget was closed")));
                };
                match self.held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => self.held = Some(permit),
                }
            }
            self.reserved += cap;
            self.chunks.push(BytesMut::with_capacity(cap));
        }
        Poll::Ready(
            self.chunks
                .last_mut()
                .ok_or_else(|| io::Error::other("no chunk")),
        )
    }

    /// Waits for the budget now (its last chunk is full and it lacks bytes).
    fn waits_for_budget(&self) -> bool {
        self.chunks.last().is_some_and(|c| c.len() == c.capacity()) && self.got < self.size
    }
}

/// A chunk's count of bytes as permits (a chunk is at most `CHUNK` bytes).
fn chunk_permits(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Bytes of each unfinished frame that do not count against the budget: small requests (most
/// of them) never touch it, so a budget spent by large stalled frames holds up those, not them.
pub const FREE_PER_FRAME: usize = 16 * 1024;

fn counted(capacity: usize) -> usize {
    capacity.saturating_sub(FREE_PER_FRAME)
}

/// The node-wide allowance of bytes held in unfinished frames (shared by its connections): a
/// semaphore of bytes, so a frame that would go over waits its turn, in order.
#[derive(Clone, Debug)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    max: usize,
}

impl Budget {
    /// At most `max` bytes of unfinished frames, across every connection sharing it.
    #[must_use]
    pub fn new(max: usize) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Bytes held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.max - self.bytes.available_permits()
    }
}

/// Bytes read through the stack at a time (between frames and in headers); at most a frame's
/// free bytes, so what follows a header in the same read never waits for the budget.
const READ_CHUNK: usize = 8 * 1024;
const _: () = assert!(READ_CHUNK <= FREE_PER_FRAME);
/// Bytes read from one connection before the others on its worker get their turn.
const READ_PER_POLL: usize = 128 * 1024;

impl<S: AsyncRead + Unpin> Guarded<S> {
    /// Reads until a whole frame is ready (`Ready(Ok(true))`), the peer closed the connection
    /// (`Ready(Ok(false))`), or a limit closed it (an error).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut read = 0;
        loop {
            if !self.ready.is_empty() {
                return Poll::Ready(Ok(true));
            }
            if let Some(turn) = self.yielded.as_mut() {
                std::task::ready!(turn.as_mut().poll(cx));
                self.yielded = None;
            }
            if read >= READ_PER_POLL {
                // Its turn is over, as Redis reads at most 16 KiB per client per turn of its
                // event loop: the worker first looks for other sockets that became ready (a
                // small request among them) and serves them, then this one reads on. Woken at
                // once instead, it would keep the worker from looking for ready sockets for up
                // to tokio's 61 polls, milliseconds with a few large frames arriving.
                let mut turn: Pin<Box<dyn Future<Output = ()> + Send>> =
                    Box::pin(tokio::task::yield_now());
                if turn.as_mut().poll(cx).is_pending() {
                    self.yielded = Some(turn);
                    return Poll::Pending;
                }
                read = 0;
                continue;
            }
            let polled = if let Some(frame) = self.frame.as_mut() {
                // Inside a frame's body: straight into its chunk, at most what the frame lacks
                // (a chunk never reaches past its frame), a chunk's worth per read.
                // Not read while the budget has no room for it: the bytes wait in the
                // kernel, and the sender, once its window is full, waits too.
                match frame.poll_spare_chunk(Some(&self.budget), Some(cx)) {
                    Poll::Ready(Ok(chunk)) => {
                        match tokio_util::io::poll_read_buf(Pin::new(&mut self.inner), cx, chunk) {
                            Poll::Ready(Ok(n)) => {
                                frame.got += n;
                                if frame.got == frame.size {
                                    self.finish_frame();
                                }
                                Poll::Ready(Ok(n))
                            }
                            other => other,
                        }
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            } else {
                // Between frames or in a header: through the stack, so an idle connection
                // holds no read buffer of its own.
                let mut scratch = [0u8; READ_CHUNK];
                let mut chunk = ReadBuf::new(&mut scratch);
                match Pin::new(&mut self.inner).poll_read(cx, &mut chunk) {
                    Poll::Ready(Ok(())) => {
                        let n = chunk.filled().len();
                        self.take(&scratch[..n])?;
                        Poll::Ready(Ok(n))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                }
            };
            match polled {
                Poll::Ready(Ok(0)) => {
                    // End of stream (a partial frame is dropped with it).
                    return Poll::Ready(Ok(false));
                }
                Poll::Ready(Ok(n)) => read += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if self.deadline.as_mut().poll(cx).is_ready() {
                        let secs = self.frame_timeout.as_secs_f64();
                        let why = match &self.frame {
                            _ if self.between_frames() => {
                                format!("idle for {} s", self.idle_timeout.as_secs())
                            }
                            Some(f) if f.waits_for_budget() => format!(
                                "a frame did not arrive whole within {secs} s (it waited for \
                                 the node's room for unfinished requests, \
                                 --max-partial-frames-mib)"
                            ),
                            _ => format!("a frame did not arrive whole within {secs} s"),
                        };
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    /// Waits for the first whole frame: `Ok(true)` once it is ready to be read, `Ok(false)` if
    /// the peer closed the connection first. The caller builds what serves requests only then,
    /// so a connection that sends nothing costs its socket, its timer and this struct.
    ///
    /// # Errors
    /// The frame or idle timeout passed, a frame is over the limit or the budget, or reading
    /// failed.
    pub async fn first_frame(&mut self) -> io::Result<bool> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

impl<S: crate::net::Conn> crate::net::Conn for Guarded<S> {
    /// The socket and the deadline's timer, both to the current runtime.
    fn rehome(&mut self) -> std::io::Result<()> {
        self.inner.rehome()?;
        self.deadline = Box::pin(tokio::time::sleep_until(self.deadline.deadline()));
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_fill(cx) {
            Poll::Ready(Ok(true)) => {
                // Chunk by chunk, each let go once read: a connection that sent one large frame
                // does not keep its memory.
                while buf.remaining() > 0 {
                    let Some(front) = this.ready.front_mut() else {
                        break;
                    };
                    let n = front.len().min(buf.remaining());
                    buf.put_slice(&front[..n]);
                    front.advance(n);
                    if front.is_empty() {
                        this.ready.pop_front();
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(false)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
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

    type Side = (tokio::io::DuplexStream, Guarded<tokio::io::DuplexStream>);

    /// Two guarded connections sharing `budget` (frames up to 1 MB, the given frame timeout,
    /// a 60 s idle timeout), each with the client end that writes to it.
    fn two_on(budget: &Budget, frame_timeout: Duration) -> (Side, Side) {
        let one = || {
            let (client, server) = tokio::io::duplex(1 << 20);
            let g = Guarded::new(
                server,
                1_000_000,
                frame_timeout,
                Duration::from_secs(60),
                budget.clone(),
            );
            (client, g)
        };
        (one(), one())
    }

    #[tokio::test]
    async fn a_frame_over_the_budget_waits_unread_until_room_is_given_back() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let budget = Budget::new(150_000);
        let ((mut a, mut ga), (mut b, mut gb)) = two_on(&budget, Duration::from_secs(30));
        let mut buf = [0u8; 2048];
        // A holds 80 KB of an unfinished 500 KB frame: its chunks (16 KiB free, then 64 KiB)
        // hold 64 KiB of the budget.
        a.write_all(&500_000u32.to_be_bytes()).await.expect("write");
        a.write_all(&vec![1u8; 80_000]).await.expect("write");
        let early = tokio::time::timeout(Duration::from_millis(50), ga.read(&mut buf)).await;
        assert!(early.is_err(), "{early:?}");
        assert_eq!(
            budget.held(),
            64 * 1024,
            "what A reserved past its free 16 KiB"
        );
        // B sends a whole 120 KB frame, but its last chunk (37 KiB, after 16 KiB free and 64 KiB)
        // would go over: it waits, with what it has, and is not closed.
        let body: Vec<u8> = (0..120_000u32).map(|i| (i % 251) as u8).collect();
        b.write_all(&120_000u32.to_be_bytes()).await.expect("write");
        b.write_all(&body).await.expect("write");
        let early = tokio::time::timeout(Duration::from_millis(100), gb.read(&mut buf)).await;
        assert!(early.is_err(), "B's frame went over the budget: {early:?}");
        // A's chunk, B's first, and what was left, set aside for B's next.
        assert_eq!(
            budget.held(),
            150_000,
            "the budget is all held or set aside"
        );
        // A's connection is closed: its bytes are given back, and B's frame arrives whole.
        drop(ga);
        let mut got = vec![0u8; 120_004];
        gb.read_exact(&mut got).await.expect("B's frame");
        assert_eq!(&got[..4], &120_000u32.to_be_bytes());
        assert!(got[4..] == body[..], "B's frame differs");
        assert_eq!(
            budget.held(),
            0,
            "a whole frame and a closed connection give theirs back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_waiting_for_the_budget_still_times_out_and_says_why() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let budget = Budget::new(64 * 1024);
        let ((mut a, mut ga), (mut b, mut gb)) = two_on(&budget, Duration::from_secs(2));
        let mut buf = [0u8; 64];
        a.write_all(&500_000u32.to_be_bytes()).await.expect("write");
        a.write_all(&vec![1u8; 80_000]).await.expect("write");
        b.write_all(&500_000u32.to_be_bytes()).await.expect("write");
        b.write_all(&vec![2u8; 80_000]).await.expect("write");
        let (ea, eb) = tokio::join!(ga.read(&mut buf), async {
            let mut buf = [0u8; 64];
            gb.read(&mut buf).await
        });
        let (ea, eb) = (ea.expect_err("A times out"), eb.expect_err("B times out"));
        // One of them holds the whole budget; the other waited for it, and says so.
        let waited = [&ea, &eb]
            .iter()
            .filter(|e| e.to_string().contains("--max-partial-frames-mib"))
            .count();
        assert_eq!(waited, 1, "{ea} / {eb}");
        assert!(ea.to_string().contains("did not arrive whole"), "{ea}");
        assert!(eb.to_string().contains("did not arrive whole"), "{eb}");
        drop((ga, gb));
        assert_eq!(budget.held(), 0);
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Frames of any size up to the limit, written in pieces of any size, come out as
        /// the same bytes, in order, and the budget is all given back.
        #[test]
        fn frames_in_any_pieces_come_out_whole_and_in_order(
            sizes in proptest::collection::vec(0usize..200_000, 1..6),
            pieces in proptest::collection::vec(1usize..100_000, 1..20),
        ) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut sent = Vec::new();
                for (i, size) in sizes.iter().enumerate() {
                    sent.extend_from_slice(&u32::try_from(*size).expect("size").to_be_bytes());
                    sent.extend((0..*size).map(|j| u8::try_from((i * 7 + j) % 251).expect("byte")));
                }
                let budget = Budget::new(1 << 20);
                let (mut client, server) = tokio::io::duplex(1 << 16);
                let mut g = Guarded::new(
                    server,
                    200_000,
                    Duration::from_secs(30),
                    Duration::from_secs(30),
                    budget.clone(),
                );
                let to_send = sent.clone();
                let writer = tokio::spawn(async move {
                    let mut at = 0;
                    for p in pieces.iter().cycle() {
                        if at == to_send.len() {
                            break;
                        }
                        let end = (at + p).min(to_send.len());
                        client.write_all(&to_send[at..end]).await.expect("write");
                        at = end;
                    }
                    client
                });
                let mut got = vec![0u8; sent.len()];
                g.read_exact(&mut got).await.expect("read the frames");
                assert!(got == sent, "the bytes differ");
                assert_eq!(budget.held(), 0, "every whole frame gives its bytes back");
                drop(writer.await.expect("writer"));
            });
        }
    }
}
