//! Garbage on the port costs the sender its connection, never the node.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use bincode::Options;
use harness::{NodeProcess, client, ctx};
use rand::RngCore;
use serde::Serialize;
use serde_bytes::ByteBuf;
use shared::{proto::KvRequest, transport::wire_options};
use tarpc::ClientMessage;

/// Reads until the peer closes (or 10 s pass); true if it closed.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return true,
            Ok(_) => {}
        }
    }
    false
}

fn assert_answers(ep: &str, rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let c = client(ep).await;
        let status = c.status(ctx()).await.expect("rpc").expect("status");
        assert_eq!(status.shards.len(), 2);
    });
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// A connection past the handshake (no token: the node has no --auth-file), ready for frames.
fn handshaken(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let hello = shared::transport::Hello {
        version: shared::transport::HANDSHAKE_VERSION,
        token: None,
    };
    s.write_all(&frame(&wire_options().serialize(&hello).unwrap()))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("a welcome");
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).unwrap();
    let welcome: shared::transport::Welcome = wire_options().deserialize(&body).unwrap();
    assert!(
        matches!(welcome, shared::transport::Welcome::Accepted { .. }),
        "{welcome:?}"
    );
    s
}

#[test]
fn garbage_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::master(dir.path(), 2, &[]);
    let ep = node.endpoint();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A client that stays connected through all of it.
    let bystander = rt.block_on(client(&ep));

    // 1 MiB of random bytes.
    let mut noise = vec![0u8; 1024 * 1024];
    rand::rng().fill_bytes(&mut noise);
    noise[0] = 0x7f; // a length far beyond the frame limit
    let mut s = TcpStream::connect(node.addr).unwrap();
    let _ = s.write_all(&noise);
    assert!(
        closed_by_peer(&mut s),
        "random bytes did not close the connection"
    );
    assert_answers(&ep, &rt);

    // A frame announcing 4 GiB.
    let mut s = TcpStream::connect(node.addr).unwrap();
    s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "a 4 GiB frame header did not close the connection"
    );
    assert_answers(&ep, &rt);

    // A handshake frame that is not one.
    let mut s = TcpStream::connect(node.addr).unwrap();
    s.write_all(&frame(&[9, 9, 9, 9, 9])).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "an undecodable handshake did not close the connection"
    );

    // After the handshake, a well-framed body that is not a request.
    let mut s = handshaken(node.addr);
    s.write_all(&frame(&[9, 9, 9, 9, 9])).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "an undecodable frame did not close the connection"
    );

    // A real request whose deadline is u64::MAX seconds away: clamped, and answered.
    let msg: ClientMessage<KvRequest> = ClientMessage::Request(tarpc::Request {
        context: tarpc::context::current(),
        id: 1,
        message: KvRequest::Status {},
    });
    let body = wire_options().serialize(&msg).unwrap();
    #[derive(Serialize, serde::Deserialize)]
    struct RawDuration {
        secs: u64,
        nanos: u32,
    }
    #[derive(Serialize, serde::Deserialize)]
    enum RawHead {
        Request(RawDuration),
    }
    let mut rest = body.as_slice();
    let _: RawHead = wire_options()
        .allow_trailing_bytes()
        .deserialize_from(&mut rest)
        .unwrap();
    let mut crafted = wire_options()
        .serialize(&RawHead::Request(RawDuration {
            secs: u64::MAX,
            nanos: 0,
        }))
        .unwrap();
    crafted.extend_from_slice(rest);
    let mut s = handshaken(node.addr);
    s.write_all(&frame(&crafted)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .expect("an answer to the clamped request");
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    let reply: tarpc::Response<shared::proto::KvResponse> =
        wire_options().deserialize(&reply).unwrap();
    assert_eq!(reply.request_id, 1);
    assert!(reply.message.is_ok());

    // Deadline seconds and nanoseconds that overflow a Duration: that connection only.
    let mut bad = wire_options()
        .serialize(&(0u8, u64::MAX, 2_000_000_000u32))
        .unwrap();
    bad.extend_from_slice(rest);
    let mut s = handshaken(node.addr);
    s.write_all(&frame(&bad)).unwrap();
    assert!(
        closed_by_peer(&mut s),
        "an overflowing deadline did not close the connection"
    );

    assert_answers(&ep, &rt);
    rt.block_on(async {
        let got = bystander
            .get(ctx(), ByteBuf::from(b"nothing".to_vec()))
            .await
            .expect("bystander rpc");
        assert_eq!(got, Ok(None));
    });
    assert!(node.is_running());
    let lines = node.stdout.all();
    assert!(
        !lines.iter().any(|l| l.contains("panic")),
        "kvd logged a panic: {lines:#?}"
    );
}

#[test]
fn unauthenticated_connections_per_address_are_capped_and_authenticated_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(dir.path(), 2, &["--max-connections-per-ip=2"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Three authenticated connections from 127.0.0.1: past the handshake, they do not count.
    let clients = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(client(&node.endpoint()).await);
        }
        v
    });
    rt.block_on(async {
        for c in &clients {
            c.status(ctx()).await.unwrap().unwrap();
        }
    });
    // Two that never send their handshake hold the address's cap...
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(node.addr).unwrap())
        .collect();
    assert!(
        node.stdout
            .wait_for("too many", Duration::from_millis(300))
            .is_none()
    );
    // ...so a third is closed at once, while the authenticated ones keep working.
    let mut third = TcpStream::connect(node.addr).unwrap();
    assert!(closed_by_peer(&mut third), "a third connection was kept");
    assert!(
        node.stdout
            .wait_for(
                "too many unauthenticated connections",
                Duration::from_secs(5)
            )
            .is_some()
    );
    rt.block_on(async {
        for c in &clients {
            c.status(ctx()).await.unwrap().unwrap();
        }
    });
    // Closing the held ones frees the cap.
    drop(held);
    assert!(
        harness::wait_until(Duration::from_secs(10), || {
            rt.block_on(async {
                let ep = shared::addr::parse_endpoint(&node.endpoint(), 3000).unwrap();
                match shared::transport::connect(&ep, &shared::transport::Credentials::default())
                    .await
                {
                    Ok(c) => c.status(ctx()).await.is_ok_and(|r| r.is_ok()),
                    Err(_) => false,
                }
            })
        }),
        "the slots of closed connections were not freed"
    );
}

/// A frame that stalls half-way, and a connection that goes idle, are closed within their
/// timeouts; the node keeps serving.
#[test]
fn stalled_frames_and_idle_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::master(
        dir.path(),
        2,
        &["--frame-timeout-ms=500", "--idle-timeout-secs=1"],
    );
    let mut stalled = handshaken(node.addr);
    // Half of a 1 MiB frame.
    stalled.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    stalled.write_all(&vec![0u8; 1 << 19]).unwrap();
    let started = Instant::now();
    assert!(closed_by_peer(&mut stalled), "a stalled frame was kept");
    let stalled_after = started.elapsed();
    let mut idle = handshaken(node.addr);
    let started = Instant::now();
    assert!(closed_by_peer(&mut idle), "an idle connection was kept");
    let idle_after = started.elapsed();
    eprintln!("stalled frame closed after {stalled_after:?}, idle connection after {idle_after:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_answers(&node.endpoint(), &rt);
}
