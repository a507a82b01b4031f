//! TLS and mutual TLS on the RPC links (issue #11, acceptance 3): certificates made by the test
//! (rcgen), real nodes, kvctl.

use std::{path::Path, time::Duration};

use harness::{NodeProcess, kvctl, wait_until};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

fn ca() -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    Ca { cert, key, pem }
}

/// A certificate for 127.0.0.1 signed by `ca`, written as `<name>.crt` and `<name>.key`.
fn issue(ca: &Ca, dir: &Path, name: &str) -> (String, String) {
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let crt = dir.join(format!("{name}.crt"));
    let k = dir.join(format!("{name}.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (crt.display().to_string(), k.display().to_string())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn run(ep: &str, pre: &[&str], args: &[&str]) -> std::process::Output {
    let all: Vec<&str> = pre.iter().chain(args).copied().collect();
    kvctl(ep, &all, None)
}

#[test]
fn a_master_and_a_replica_over_tls_replicate_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = ca();
    let ca_file = write(d, "ca.crt", &authority.pem);
    let (mcrt, mkey) = issue(&authority, d, "master");
    let (rcrt, rkey) = issue(&authority, d, "replica");
    let master = NodeProcess::master(
        &d.join("m"),
        2,
        &[&format!("--tls-cert={mcrt}"), &format!("--tls-key={mkey}")],
    );
    let m = master.endpoint();
    let replica = NodeProcess::replica(
        &d.join("r"),
        2,
        &m,
        &[
            &format!("--tls-cert={rcrt}"),
            &format!("--tls-key={rkey}"),
            &format!("--master-ca={ca_file}"),
        ],
    );
    let tls = ["--cacert", ca_file.as_str()];
    let out = run(&m, &tls, &["put", "k", "over tls"]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&replica.endpoint(), &tls, &["get", "k"]);
    let replicated = wait_until(Duration::from_secs(20), || {
        let out = run(&replica.endpoint(), &tls, &["get", "k"]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "over tls"
    });
    assert!(replicated, "the replica did not get the write: {out:?}");
    assert!(
        wait_until(Duration::from_secs(20), || run(&m, &tls, &["verify"])
            .status
            .success()),
        "verify over TLS"
    );

    // Plain TCP against the TLS port: refused, and the node keeps serving.
    let out = kvctl(&m, &["get", "k"], None);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // A client trusting another CA: refused (its TLS handshake fails), the node keeps serving.
    let other = write(d, "other-ca.crt", &ca().pem);
    let out = run(&m, &["--cacert", &other], &["get", "k"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS"), "{err}");
    let out = run(&m, &tls, &["get", "k"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        master
            .stdout
            .wait_for("TLS handshake failed", Duration::from_secs(5))
            .is_some()
    );
}

#[test]
fn mutual_tls_takes_only_clients_with_a_certificate_of_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let authority = ca();
    let ca_file = write(d, "ca.crt", &authority.pem);
    let (mcrt, mkey) = issue(&authority, d, "master");
    let (rcrt, rkey) = issue(&authority, d, "replica");
    let (ccrt, ckey) = issue(&authority, d, "operator");
    let mtls = |crt: &str, key: &str| {
        vec![
            format!("--tls-cert={crt}"),
            format!("--tls-key={key}"),
            format!("--tls-client-ca={ca_file}"),
            format!("--master-ca={ca_file}"),
        ]
    };
    let margs = mtls(&mcrt, &mkey);
    let margs: Vec<&str> = margs.iter().map(String::as_str).collect();
    let master = NodeProcess::master(&d.join("m"), 2, &margs);
    let m = master.endpoint();
    let rargs = mtls(&rcrt, &rkey);
    let rargs: Vec<&str> = rargs.iter().map(String::as_str).collect();
    let replica = NodeProcess::replica(&d.join("r"), 2, &m, &rargs);

    // Without a client certificate: refused.
    let out = run(&m, &["--cacert", &ca_file], &["get", "k"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // With one from the CA: served, and the replica (presenting its own) replicates.
    let me = [
        "--cacert",
        ca_file.as_str(),
        "--cert",
        ccrt.as_str(),
        "--key",
        ckey.as_str(),
    ];
    let out = run(&m, &me, &["put", "k", "mutual"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        wait_until(Duration::from_secs(20), || run(&m, &me, &["verify"])
            .status
            .success()),
        "verify over mutual TLS"
    );
    let out = run(&replica.endpoint(), &me, &["get", "k"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "mutual",
        "{out:?}"
    );
    // A certificate from another CA: refused.
    let stranger = ca();
    let (scrt, skey) = issue(&stranger, d, "stranger");
    let out = run(
        &m,
        &["--cacert", &ca_file, "--cert", &scrt, "--key", &skey],
        &["get", "k"],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(run(&m, &me, &["get", "k"]).status.success());
}
