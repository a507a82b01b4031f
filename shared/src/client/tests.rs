//! The client against fake nodes on loopback: discovery, following `NotMaster` across a
//! switchover, read retries, and the classification of writes whose outcome is unknown.
//! Nothing here sleeps: a test that needs the client to be waiting waits on what the fake
//! nodes counted.

use std::{sync::atomic::Ordering, time::Duration};

use super::{
    testing::{Fake, Live, MASTER_VERSION, closed_endpoint, serve},
    *,
};

/// Long enough never to be hit by a test that passes.
const WAIT: Duration = Duration::from_secs(10);

fn client(endpoints: &[&Endpoint], timeout: Duration) -> Client {
    Client::builder(endpoints.iter().map(|e| (*e).clone()))
        .timeout(timeout)
        .build()
        .expect("client")
}

fn count(live: &Live, counter: fn(&Live) -> &std::sync::atomic::AtomicU64) -> u64 {
    counter(live).load(Ordering::SeqCst)
}

fn writes(l: &Live) -> u64 {
    count(l, |l| &l.writes)
}

fn refused(l: &Live) -> u64 {
    count(l, |l| &l.refused)
}

fn put() -> PutRequest {
    PutRequest::new("k", "v")
}

#[test]
fn endpoint_lists() {
    let list = parse_endpoints("a:1, http://b:2,c").expect("parse");
    assert_eq!(
        list.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["a:1", "b:2", "c:3000"]
    );
    assert!(parse_endpoints("a:1,https://b:2").is_err());
    assert!(parse_endpoints(" , ").is_err());
    assert!(matches!(
        Client::builder(Vec::new()).build(),
        Err(Error::NoEndpoints)
    ));
}

#[tokio::test]
async fn writes_find_the_master_a_replica_names() {
    let master = Fake::master("m1");
    let m = master.live.clone();
    let master_at = serve(master).await;
    let r1 = Fake::replica("r1", &master_at);
    let r2 = Fake::replica("r2", &master_at);
    let (l1, l2) = (r1.live.clone(), r2.live.clone());
    let (r1, r2) = (serve(r1).await, serve(r2).await);
    // Only replicas are listed: the master is found through them.
    let c = client(&[&r1, &r2], WAIT);
    assert_eq!(c.put(put()).await.expect("put"), MASTER_VERSION);
    assert_eq!(writes(&m), 1);
    assert_eq!(
        (refused(&l1), refused(&l2)),
        (0, 0),
        "no write went to a replica"
    );

    let found = c.discover().await;
    let (at, status) = found.master().expect("a master");
    assert_eq!((at, status.node_id.as_str()), (&master_at, "m1"));
    let seen = found
        .nodes
        .iter()
        .find(|n| n.endpoint == master_at)
        .expect("asked");
    assert!(!seen.listed, "named by a replica, not listed");
    assert_eq!(
        found
            .members()
            .iter()
            .map(|m| m.node_id.as_str())
            .collect::<Vec<_>>(),
        ["r1", "master", "r2", "m1"]
    );
}

#[tokio::test]
async fn the_master_with_the_highest_epoch_wins() {
    // A stale master (epoch 1, still writable: it has not heard of the promotion), a replica
    // of the new master at epoch 2, and the new master, which only the replica names.
    let new = Fake {
        epoch: 2,
        ..Fake::master("new")
    };
    let new_live = new.live.clone();
    let new_at = serve(new).await;
    let stale = Fake::master("stale");
    let stale_live = stale.live.clone();
    let stale_at = serve(stale).await;
    let replica = serve(Fake {
        epoch: 2,
        ..Fake::replica("r", &new_at)
    })
    .await;
    let c = client(&[&stale_at, &replica], WAIT);
    c.put(put()).await.expect("put");
    assert_eq!(writes(&new_live), 1);
    assert_eq!(
        writes(&stale_live),
        0,
        "nothing written on the stale master"
    );
}

#[tokio::test]
async fn a_write_follows_not_master_across_a_switchover() {
    let a = Fake::master("a");
    let a_live = a.live.clone();
    let a_at = serve(a).await;
    let b = Fake::replica("b", &a_at);
    let b_live = b.live.clone();
    let b_at = serve(b).await;
    let c = client(&[&a_at, &b_at], WAIT);
    c.put(put()).await.expect("put on a");
    assert_eq!(writes(&a_live), 1);

    // The switchover: b takes epoch 2, a becomes its replica and refuses writes naming b.
    b_live.become_master(2);
    a_live.become_replica(Some(b_at.to_string()), 2);
    c.put(put()).await.expect("put follows to b");
    assert_eq!((writes(&a_live), refused(&a_live)), (1, 1));
    assert_eq!(writes(&b_live), 1);
    // b is remembered: the next write goes straight there.
    c.delete(b"k").await.expect("delete on b");
    assert_eq!((writes(&b_live), refused(&a_live)), (2, 1));
}

#[tokio::test]
async fn a_write_waits_out_a_switchover_pause() {
    let a = Fake::master("a");
    let a_live = a.live.clone();
    let a_at = serve(a).await;
    let b = Fake::replica("b", &a_at);
    let b_live = b.live.clone();
    let b_at = serve(b).await;
    let c = client(&[&a_at, &b_at], WAIT);
    c.put(put()).await.expect("put on a");

    // The pause: a still is the master but admits no writes (and says so); nobody is writable.
    a_live.set_writable(false, &Fake::master("a"));
    let statuses = a_live.statuses.load(Ordering::SeqCst);
    let write = tokio::spawn({
        let c = c.clone();
        async move { c.put(put()).await }
    });
    // The write was refused once (NotMaster, no master named), and the client went on asking
    // the nodes for their status: it is waiting.
    a_live
        .wait("the client asks again", WAIT, |l| {
            refused(l) == 1 && l.statuses.load(Ordering::SeqCst) >= statuses + 2
        })
        .await;
    assert!(!write.is_finished());
    b_live.become_master(2);
    a_live.become_replica(Some(b_at.to_string()), 2);
    let version = tokio::time::timeout(WAIT, write)
        .await
        .expect("the write ends")
        .expect("task")
        .expect("written on b");
    assert_eq!(version, MASTER_VERSION);
    assert_eq!((writes(&a_live), writes(&b_live)), (1, 1));
}

#[tokio::test]
async fn no_writable_master_in_time_is_an_error_naming_what_was_seen() {
    let paused = Fake {
        writable: false,
        ..Fake::master("a")
    };
    let live = paused.live.clone();
    let at = serve(paused).await;
    let c = client(&[&at], Duration::from_millis(300));
    let e = c.put(put()).await.expect_err("nobody takes writes");
    assert!(matches!(e, Error::NoMaster { .. }), "{e:?}");
    assert!(e.is_unreachable());
    let msg = e.to_string();
    assert!(
        msg.starts_with("no writable master found within 0.3s: "),
        "{msg}"
    );
    assert!(msg.contains("master a (epoch 1), writes paused"), "{msg}");
    assert_eq!(writes(&live), 0);
}

#[tokio::test]
async fn nodes_that_cannot_be_reached_fail_at_once() {
    let (x, y) = (closed_endpoint(), closed_endpoint());
    // Not after the whole timeout: nobody answered, so nobody is worth waiting for.
    let c = client(&[&x, &y], Duration::from_secs(30));
    let started = Instant::now();
    let e = c.put(put()).await.expect_err("unreachable");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        matches!(e, Error::NoEndpointAnswered { ref errors } if errors.len() == 2),
        "{e:?}"
    );
    assert!(e.is_unreachable());
    let e = client(&[&x], WAIT)
        .get(b"k")
        .await
        .expect_err("unreachable");
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&x.port.to_string()), "{e}");
}

#[tokio::test]
async fn a_write_never_sent_is_retried_on_the_new_master() {
    let a = Fake::master("a");
    let a_live = a.live.clone();
    let a_at = serve(a).await;
    let b = Fake::replica("b", &a_at);
    let b_live = b.live.clone();
    let b_at = serve(b).await;
    let c = client(&[&a_at, &b_at], WAIT);
    c.put(put()).await.expect("put on a");
    let conn = c.node(&a_at).await.expect("the pooled connection");

    // a goes away; b is promoted. The client's connection to a is closed before it writes.
    a_live.shut_down();
    tokio::time::timeout(WAIT, conn.closed())
        .await
        .expect("the connection to a closes");
    b_live.become_master(2);
    c.put(put()).await.expect("written on b");
    assert_eq!((writes(&a_live), writes(&b_live)), (1, 1));
}

#[tokio::test]
async fn a_write_lost_after_it_was_sent_is_unknown_and_not_retried() {
    let m = Fake::master("m");
    let m_live = m.live.clone();
    m_live.hang_up_on_writes(1);
    let m_at = serve(m).await;
    let r = Fake::replica("r", &m_at);
    let r_live = r.live.clone();
    let r_at = serve(r).await;
    let c = client(&[&m_at, &r_at], WAIT);
    let e = c.put(put()).await.expect_err("in doubt");
    assert!(
        matches!(
            e,
            Error::OutcomeUnknown {
                request: "put",
                cause: Lost::ConnectionBroke(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_outcome_unknown() && !e.is_unreachable());
    // Applied once, sent once: not retried on the master, nor sent anywhere else.
    assert_eq!(writes(&m_live), 1);
    assert_eq!(refused(&r_live), 0);
    // The broken connection was dropped: the next write gets a new one.
    c.put(put()).await.expect("the next write");
    assert_eq!(writes(&m_live), 2);
}

#[tokio::test]
async fn a_write_without_an_answer_is_unknown() {
    let slow = Fake {
        write_delay: Duration::from_secs(30),
        ..Fake::master("m")
    };
    let live = slow.live.clone();
    let m = serve(slow).await;
    let r = Fake::replica("r", &m);
    let r_live = r.live.clone();
    let r = serve(r).await;
    let c = client(&[&m, &r], Duration::from_millis(300));
    let e = c.put(put()).await.expect_err("no answer");
    assert!(
        matches!(
            e,
            Error::OutcomeUnknown {
                request: "put",
                cause: Lost::NoAnswer(_),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("no answer came within 0.3s"), "{e}");
    assert_eq!(writes(&live), 1);
    assert_eq!(refused(&r_live), 0, "not sent anywhere else");
}

#[tokio::test]
async fn a_refusal_is_the_answer_and_is_not_retried() {
    let m = Fake::master("m");
    let live = m.live.clone();
    let at = serve(m).await;
    let c = client(&[&at], WAIT);
    let req = PutRequest {
        acks: 1,
        acks_timeout_ms: 10,
        ..put()
    };
    let e = c.put(req).await.expect_err("too few acks");
    assert!(matches!(e, Error::Kv(KvError::AcksTimeout { .. })), "{e:?}");
    assert_eq!(writes(&live), 1);
}

#[tokio::test]
async fn reads_go_to_the_first_endpoint_that_answers() {
    let gone = closed_endpoint();
    let r1 = Fake::replica("r1", &gone).with("k", "from r1");
    let r1_live = r1.live.clone();
    let r1 = serve(r1).await;
    let m = serve(Fake::master("m").with("k", "from m")).await;
    let c = client(&[&gone, &r1, &m], WAIT);
    let found = c.get(b"k").await.expect("get").expect("present");
    assert_eq!(found.value.as_slice(), b"from r1");
    // From the master, on request.
    let found = c
        .reading_from_master()
        .get(b"k")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(found.value.as_slice(), b"from m");

    // A read whose connection breaks is asked of the next endpoint.
    r1_live.hang_up_on_reads(1);
    let found = c.get(b"k").await.expect("get").expect("present");
    assert_eq!(found.value.as_slice(), b"from m");
    // The next read is r1's again, on a new connection.
    let found = c.get(b"k").await.expect("get").expect("present");
    assert_eq!(found.value.as_slice(), b"from r1");
    assert_eq!(r1_live.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn cluster_status_is_asked_of_the_master() {
    let m = serve(Fake::master("m")).await;
    let r = serve(Fake::replica("r", &m)).await;
    let c = client(&[&r], WAIT);
    let cluster = c.cluster_status().await.expect("cluster");
    assert_eq!(cluster.master.node_id, "m");
    // And reads of a replica's own status stay on the replica.
    assert_eq!(c.status().await.expect("status").node_id, "r");
}

#[test]
fn calls_can_run_on_any_thread() {
    fn send<T: Send>(_: &T) {}
    let c = client(&[&closed_endpoint()], WAIT);
    send(&c.put(put()));
    send(&c.get(b"k"));
    send(&c.mput(MputRequest::default()));
    send(&c.mget(Vec::new()));
    send(&c.cluster_status());
    send(&c.master());
    send(&c.discover());
}

#[tokio::test]
async fn a_failover_that_meets_another_master_is_not_sent_on() {
    use crate::cluster::FailoverRequest;
    let b = Fake::replica("b", &closed_endpoint());
    let b_live = b.live.clone();
    let b_at = serve(b).await;
    // a answers its status as a master, and the failover as a replica of b (it moved on).
    let a = Fake::master("a");
    let a_live = a.live.clone();
    let a_at = serve(a).await;
    let c = client(&[&a_at, &b_at], WAIT);
    c.master().await.expect("a is the master");
    a_live.become_replica(Some(b_at.to_string()), 2);
    b_live.become_master(2);
    let e = c
        .failover(FailoverRequest {
            to: None,
            plan_only: false,
            timeout_ms: 1000,
        })
        .await
        .expect_err("not the master any more");
    assert!(
        matches!(e, Error::Kv(KvError::NotMaster { epoch: 2, .. })),
        "{e:?}"
    );
    assert!(
        b_live.failovers.lock().expect("lock").is_empty(),
        "not sent to b"
    );
    // Writes, though, follow it.
    c.put(put()).await.expect("put on b");
    assert_eq!(writes(&b_live), 1);
}
