//! TLS between the real programs: a `liteobs-server` with `-tls-cert`/`-tls-key`, an agent
//! replaying a capture to it over `https://`, and the client querying it back, all trusting a CA
//! this test makes with rcgen; then every way it should refuse: a wrong CA (client and agent), a
//! certificate for another name, plain `http://` to the TLS port, and key files that are
//! missing, garbage or do not match the certificate.
//!
//! Each refusal must be one clear line on stderr (what is wrong and what to change), never a
//! panic, and must not leave a program retrying forever.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use liteobs_integration::bin;
use liteobs_model::TrafficLog;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

const TOKEN: &str = "tls-test-token";

/// A test PKI on disk: `ca.pem` signs `server.pem` (for 127.0.0.1 and localhost) and
/// `other-name.pem` (for other.example only); `wrong-ca.pem` signs nothing here.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, issuer) = ca("LiteObs test CA");
        let (wrong_pem, _) = ca("Some other CA");
        let write = |name: &str, contents: &str| std::fs::write(dir.path().join(name), contents).unwrap();
        write("ca.pem", &ca_pem);
        write("wrong-ca.pem", &wrong_pem);
        let (cert, key) = leaf(&["127.0.0.1", "localhost"], &issuer);
        write("server.pem", &cert);
        write("server.key", &key);
        let (cert, key) = leaf(&["other.example"], &issuer);
        write("other-name.pem", &cert);
        write("other-name.key", &key);
        write("garbage.key", "this is not a key\n");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, Issuer::new(params, key))
}

fn leaf(names: &[&str], ca: &Issuer<'static, KeyPair>) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, "liteobs-server");
    (params.signed_by(&key, ca).unwrap().pem(), key.serialize_pem())
}

/// A `liteobs-server` on an ephemeral loopback port with the given certificate and key; killed
/// on drop. (The shared harness checks readiness over plain HTTP, so TLS servers start here.)
struct TlsServer {
    child: Child,
    port: u16,
    _db: tempfile::TempDir,
}

impl TlsServer {
    fn start(cert: &Path, key: &Path) -> TlsServer {
        let db = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin("liteobs-server"))
            .args(["-db-type", "sqlite", "-db-path"])
            .arg(db.path().join("store.sqlite"))
            .args(["-listen", "127.0.0.1:0", "-token", TOKEN, "-tls-cert"])
            .arg(cert)
            .arg("-tls-key")
            .arg(key)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn liteobs-server");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("liteobs-server exited before listening").unwrap();
        std::thread::spawn(move || for _ in lines {});
        let addr = line.strip_prefix("listening on https://").unwrap_or_else(|| panic!("{line:?}"));
        let port = addr.rsplit(':').next().unwrap().parse().unwrap();
        TlsServer { child, port, _db: db }
    }

    fn url(&self, scheme_host: &str) -> String {
        format!("{scheme_host}:{}", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pcap/nginx-keepalive.pcap")
}

fn run(cmd: &mut Command) -> Output {
    cmd.env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .env_remove("LITEOBS_CA_FILE")
        .env("NO_COLOR", "1")
        .output()
        .expect("run")
}

fn client(server: &str, ca: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin("liteobs-client"));
    cmd.args(["-server", server, "-token", TOKEN, "-o", "json", "-limit", "10000", "-timeout", "10"]);
    if let Some(ca) = ca {
        cmd.arg("-ca-file").arg(ca);
    }
    run(&mut cmd)
}

fn agent(server: &str, ca: &Path) -> Output {
    run(Command::new(bin("liteobs-agent"))
        .arg("-read")
        .arg(fixture())
        .args(["-server", server, "-token", TOKEN, "-node", "tls-node", "-ca-file"])
        .arg(ca)
        .args(["-max-backoff", "200ms", "-shutdown-timeout", "5s"]))
}

/// The one line a refusal prints, after checking it is exactly one line and no panic.
fn one_line(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure; stderr: {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    lines[0].to_owned()
}

fn records(out: &Output) -> Vec<TrafficLog> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON records")
}

fn sorted(mut v: Vec<TrafficLog>) -> Vec<TrafficLog> {
    v.sort_by(|a, b| (a.ts, a.src_port, &a.path).cmp(&(b.ts, b.src_port, &b.path)));
    v
}

#[test]
fn agent_and_client_talk_https_to_a_tls_server() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("server.pem"), &pki.path("server.key"));
    let expected =
        run(Command::new(bin("liteobs-agent")).arg("-read").arg(fixture()).args(["-node", "tls-node"]));
    assert!(expected.status.success(), "{}", String::from_utf8_lossy(&expected.stderr));
    // As the server stores them: with their routes.
    let expected =
        liteobs_integration::with_routes(liteobs_model::decode_ndjson(&expected.stdout).expect("NDJSON"));
    assert!(!expected.is_empty());

    let uploaded = agent(&server.url("https://127.0.0.1"), &pki.path("ca.pem"));
    assert!(uploaded.status.success(), "{}", String::from_utf8_lossy(&uploaded.stderr));
    let stored = records(&client(&server.url("https://127.0.0.1"), Some(&pki.path("ca.pem"))));
    assert_eq!(sorted(stored), sorted(expected.clone()));
    // The certificate names localhost too.
    let by_name = records(&client(&server.url("https://localhost"), Some(&pki.path("ca.pem"))));
    assert_eq!(by_name.len(), expected.len());
}

#[test]
fn a_client_that_does_not_trust_the_server_says_so_in_one_line() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("server.pem"), &pki.path("server.key"));
    let url = server.url("https://127.0.0.1");
    for ca in [Some(pki.path("wrong-ca.pem")), None] {
        let line = one_line(&client(&url, ca.as_deref()));
        assert!(line.starts_with("liteobs-client: "), "{line}");
        assert!(line.contains(&url), "{line}");
        assert!(line.contains("certificate") && line.contains("not signed by a trusted CA"), "{line}");
        assert!(line.contains("-ca-file"), "{line}");
    }
    let line = one_line(&client(&url, Some(&pki.path("missing.pem"))));
    assert!(line.contains("cannot read the CA file") && line.contains("missing.pem"), "{line}");
}

#[test]
fn an_agent_that_does_not_trust_the_server_stops_with_a_clear_line() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("server.pem"), &pki.path("server.key"));
    let started = Instant::now();
    let out = agent(&server.url("https://127.0.0.1"), &pki.path("wrong-ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}: {stderr}", started.elapsed());
    assert!(!stderr.contains("panicked") && !stderr.contains("retrying"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("liteobs-agent: "), "{stderr}");
    assert!(last.contains("not signed by a trusted CA") && last.contains("-ca-file"), "{stderr}");
    // Nothing was delivered.
    assert!(records(&client(&server.url("https://127.0.0.1"), Some(&pki.path("ca.pem")))).is_empty());
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("other-name.pem"), &pki.path("other-name.key"));
    let line = one_line(&client(&server.url("https://127.0.0.1"), Some(&pki.path("ca.pem"))));
    assert!(line.contains("certificate is not for this host name"), "{line}");
}

#[test]
fn plain_http_to_the_tls_port_is_refused_clearly() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("server.pem"), &pki.path("server.key"));
    let line = one_line(&client(&server.url("http://127.0.0.1"), None));
    assert!(line.contains("the answer is not HTTP"), "{line}");
    assert!(line.contains(&format!("use -server {}", server.url("https://127.0.0.1"))), "{line}");
    // The agent stops too, rather than retrying a server that will never answer in HTTP.
    let out = agent(&server.url("http://127.0.0.1"), &pki.path("ca.pem"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.contains("the answer is not HTTP") && last.contains("use -server https://"), "{stderr}");
}

#[test]
fn the_server_refuses_bad_key_files_at_start() {
    let pki = Pki::new();
    let cases: [(&[&str], &str); 5] = [
        (&["-tls-cert", "server.pem", "-tls-key", "missing.key"], "cannot read -tls-key"),
        (&["-tls-cert", "server.pem", "-tls-key", "garbage.key"], "holds no usable private key"),
        (&["-tls-cert", "server.pem", "-tls-key", "other-name.key"], "does not fit -tls-cert"),
        (&["-tls-cert", "garbage.key", "-tls-key", "server.key"], "holds no certificate"),
        (&["-tls-cert", "server.pem"], "-tls-key is missing"),
    ];
    for (args, want) in cases {
        let db = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(bin("liteobs-server"));
        cmd.current_dir(pki.dir.path())
            .args(["-db-type", "sqlite", "-db-path"])
            .arg(db.path().join("store.sqlite"))
            .args(["-listen", "127.0.0.1:0"])
            .args(args);
        let out = run(&mut cmd);
        let line = one_line(&out);
        assert!(line.starts_with("liteobs-server: ") && line.contains(want), "{args:?}: {line}");
        assert!(!db.path().join("store.sqlite").exists(), "{args:?}: the store was opened");
    }
}

/// `liteobs-client -follow` over https with the token: the agent's upload streams to it; a
/// wrong token ends it at once with one line (no retrying).
#[test]
fn follow_works_through_tls_and_the_token() {
    let pki = Pki::new();
    let server = TlsServer::start(&pki.path("server.pem"), &pki.path("server.key"));
    let url = server.url("https://127.0.0.1");
    let mut follower = Command::new(bin("liteobs-client"))
        .args(["-follow", "-server", &url, "-token", TOKEN, "-o", "json", "-limit", "10000", "-ca-file"])
        .arg(pki.path("ca.pem"))
        .env_remove("LITEOBS_SERVER")
        .env_remove("LITEOBS_TOKEN")
        .env_remove("LITEOBS_CA_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("liteobs-client -follow");
    let (tx, lines) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let uploaded = agent(&url, &pki.path("ca.pem"));
    assert!(uploaded.status.success(), "{}", String::from_utf8_lossy(&uploaded.stderr));
    let expected = records(&client(&url, Some(&pki.path("ca.pem"))));
    assert!(!expected.is_empty());
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let line = lines.recv_timeout(Duration::from_secs(20)).expect("a streamed record");
        got.extend(liteobs_model::decode_ndjson(line.as_bytes()).expect("an NDJSON record"));
    }
    assert_eq!(sorted(got), sorted(expected));
    let _ = Command::new("kill").args(["-INT", &follower.id().to_string()]).status();
    assert!(follower.wait().unwrap().success(), "Ctrl-C exits 0");

    let started = Instant::now();
    let wrong = run(Command::new(bin("liteobs-client"))
        .args(["-follow", "-server", &url, "-token", "not-the-token", "-ca-file"])
        .arg(pki.path("ca.pem")));
    let line = one_line(&wrong);
    assert!(line.contains("refused the token (401)"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10), "no retrying a refused token");
}
