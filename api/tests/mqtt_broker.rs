//! The MQTT link against a real Mosquitto (issue #14), started by each test on its own port:
//! retained telemetry with a message expiry, birth and last will, every command kind answered
//! with its correlation data, a retained command refused, a command outside the site's prefix
//! ignored and not replayed after a reconnection, TLS with a client certificate, a broker
//! restart, and the telemetry of a broker outage buffered in the database and resent on
//! `history` complete and in order. Needs `EMS_MOSQUITTO` (the broker binary; `scripts/test`
//! installs Debian's `mosquitto` and sets it); skipped otherwise.
// Test code: a failed unwrap or panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Test code: counts of a few dozen batches convert between u64, usize and f64 exactly.
#![allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]

mod rest_support;

use ems_api::model::{channels, ChannelValue, SiteView};
use ems_api::mqtt::{Mqtt, MqttConfig, MqttLinks, TlsFiles};
use ems_api::start::LoopAudit;
use rest_support::{harness, provider_key, signed, Harness, OPERATOR, PROVIDER, SN};
use rumqttc::v5::mqttbytes::v5::{Filter, Packet, Publish, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn mosquitto() -> Option<PathBuf> {
    match std::env::var_os("EMS_MOSQUITTO") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!("SKIP: EMS_MOSQUITTO is not set (scripts/test installs mosquitto and sets it)");
            None
        }
    }
}

/// A Mosquitto of the test's own, on a free loopback port, killed on drop.
struct Broker {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Broker {
    /// `extra`: more listener settings (TLS).
    fn start(bin: &Path, extra: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}\n"),
        )
        .unwrap();
        let mut b = Self { bin: bin.to_path_buf(), dir, port, child: None };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM: the broker saves its persistent store (retained messages) and ends.
    fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A test client: every publish it receives, in order.
struct Client {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Publish>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn connect(port: u16, id: &str, subscribe: &[&str]) -> Self {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_max_packet_size(Some(256 * 1024));
        let (client, mut el) = AsyncClient::new(o, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let (sub_tx, mut sub_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match el.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(p);
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = sub_tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        for s in subscribe {
            client.subscribe_many([Filter::new(*s, QoS::AtLeastOnce)]).await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), sub_rx.recv()).await.expect("SUBACK").unwrap();
        }
        Self { client, rx, task }
    }

    /// The next publish on `topic` within `within`.
    async fn next_on(&mut self, topic: &str, within: Duration) -> Option<Publish> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let p = tokio::time::timeout_at(until, self.rx.recv()).await.ok()??;
            if p.topic == topic.as_bytes() {
                return Some(p);
            }
        }
    }

    /// Publish a command with a token, a response topic and correlation data.
    async fn command(
        &self,
        topic: &str,
        body: &Value,
        token: Option<&str>,
        correlation: &[u8],
        retain: bool,
    ) {
        let props = PublishProperties {
            response_topic: Some("client/answers".to_owned()),
            correlation_data: Some(correlation.to_vec().into()),
            user_properties: token
                .map(|t| vec![("authorization".to_owned(), format!("Bearer {t}"))])
                .unwrap_or_default(),
            ..PublishProperties::default()
        };
        let payload = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        self.client.publish_with_properties(topic, QoS::AtLeastOnce, retain, payload, props).await.unwrap();
    }

    /// The answer with `correlation`, as JSON.
    async fn answer(&mut self, correlation: &[u8]) -> Value {
        let until = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = until - tokio::time::Instant::now();
            let p = self.next_on("client/answers", left).await.expect("an answer on the response topic");
            let c = p.properties.as_ref().and_then(|p| p.correlation_data.clone());
            if c.as_deref() == Some(correlation) {
                return serde_json::from_slice(&p.payload).unwrap();
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn config(url: &str, site: &str) -> MqttConfig {
    let mut c = MqttConfig::new(url, "ems", site).unwrap();
    c.publish_every = Duration::from_millis(200);
    c.expiry = Duration::from_secs(1);
    c.keepalive = Duration::from_secs(5);
    c
}

fn view() -> SiteView {
    let mut v = SiteView { at: Some(jiff::Timestamp::now()), ..SiteView::default() };
    v.channels.insert(channels::GRID_ACTIVE_POWER.to_owned(), ChannelValue::Number(-1500.0));
    v.channels.insert(channels::ESS_SOC.to_owned(), ChannelValue::Number(55.0));
    v.channels.insert(channels::STATE.to_owned(), ChannelValue::Text("IDLE".to_owned()));
    v.safety.state = "IDLE".to_owned();
    v
}

fn link(h: &Harness, c: &MqttConfig) -> Mqtt {
    h.view.send_replace(view());
    let links = MqttLinks {
        router: h.router.clone(),
        view: h.view.subscribe(),
        audit: Some(LoopAudit::Direct(h.store.clone())),
        db: None,
        status: None,
    };
    Mqtt::start(c, links).unwrap()
}

async fn wait_connected(m: &Mqtt, connections: u64) {
    let until = Instant::now() + Duration::from_secs(20);
    while !(m.stats().connected && m.stats().connections >= connections) {
        assert!(Instant::now() < until, "not connected: {:?}", m.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_is_retained_with_expiry_and_dies_in_the_broker() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    // A longer expiry than the other tests use: on a loaded machine a 1 s expiry can lapse
    // between two 200 ms publications, and the subscriber then gets a live (unretained) copy.
    let mut cfg = config(&broker.url(), "t1");
    cfg.expiry = Duration::from_secs(3);
    let m = link(&h, &cfg);
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // A new subscriber gets the retained values, each with its (remaining) expiry. A copy
    // published live while the subscription is set up is not retained: try a fresh subscriber.
    let mut attempt = 0;
    let (mut c, p) = loop {
        attempt += 1;
        let mut c = Client::connect(broker.port, &format!("t1-a{attempt}"), &["ems/t1/state/#"]).await;
        let p = c
            .next_on("ems/t1/state/_sum/GridActivePower", Duration::from_secs(3))
            .await
            .expect("retained grid power");
        if p.retain || attempt == 5 {
            break (c, p);
        }
    };
    assert!(p.retain, "delivered from the broker's retained store");
    assert_eq!(p.payload.as_ref(), b"-1500.0");
    let expiry = p.properties.as_ref().and_then(|p| p.message_expiry_interval);
    assert!(matches!(expiry, Some(1..=3)), "message expiry interval: {expiry:?}");
    let p = c.next_on("ems/t1/state/_sum/State", Duration::from_secs(3)).await.unwrap();
    assert_eq!(p.payload.as_ref(), b"IDLE");
    drop(c);
    // Publishing stops: after the expiry a new subscriber sees no state at all.
    m.stop(Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let mut c = Client::connect(broker.port, "t1-b", &["ems/t1/state/#", "ems/t1/status"]).await;
    let mut got = Vec::new();
    while let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(1500), c.rx.recv()).await {
        got.push((
            String::from_utf8_lossy(&p.topic).into_owned(),
            String::from_utf8_lossy(&p.payload).into_owned(),
        ));
    }
    assert_eq!(
        got,
        [("ems/t1/status".to_owned(), "offline".to_owned())],
        "only the status, no state after its expiry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn birth_then_last_will_when_the_client_dies() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    let mut c = Client::connect(broker.port, "t2-watch", &["ems/t2/status"]).await;
    let m = link(&h, &config(&broker.url(), "t2"));
    let p = c.next_on("ems/t2/status", Duration::from_secs(10)).await.expect("birth");
    assert_eq!((p.payload.as_ref(), p.retain), (&b"online"[..], false), "live delivery clears retain");
    // Killed without DISCONNECT: the broker publishes the last will.
    m.abort();
    let p = c.next_on("ems/t2/status", Duration::from_secs(10)).await.expect("last will");
    assert_eq!(p.payload.as_ref(), b"offline");
    // And it is retained for whoever looks later.
    let mut later = Client::connect(broker.port, "t2-later", &["ems/t2/status"]).await;
    let p = later.next_on("ems/t2/status", Duration::from_secs(3)).await.unwrap();
    assert_eq!((p.payload.as_ref(), p.retain), (&b"offline"[..], true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_kind_is_answered_with_its_correlation_data() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t3"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t3-c", &["client/answers"]).await;

    let body = json!({ "ess": { "mode": "LIMIT_CHARGE", "maxChargePower": 1000 } });
    c.command("ems/t3/cmd/control-modes", &body, Some(OPERATOR), b"c-modes", false).await;
    let a = c.answer(b"c-modes").await;
    assert_eq!((a["ok"].clone(), a["status"].clone()), (json!(true), json!(200)), "{a}");
    assert_eq!(a["body"]["activeControlModes"]["ess"]["mode"], "LIMIT_CHARGE", "{a}");

    c.command("ems/t3/cmd/emergency-stop", &Value::Null, Some(OPERATOR), b"c-stop", false).await;
    let a = c.answer(b"c-stop").await;
    assert_eq!((a["ok"].clone(), a["body"]["state"].clone()), (json!(true), json!("STOPPED")), "{a}");

    c.command("ems/t3/cmd/reset", &json!({ "reason": "checked on site" }), Some(OPERATOR), b"c-reset", false)
        .await;
    let a = c.answer(b"c-reset").await;
    assert_eq!((a["ok"].clone(), a["body"]["state"].clone()), (json!(true), json!("IDLE")), "{a}");

    let s = signed(SN, "2026-05-01T13:00:00Z", "CHARGE", 1000, "acme", "n-mqtt-1", &provider_key());
    c.command("ems/t3/cmd/schedules", &s, Some(PROVIDER), b"c-sched", false).await;
    let a = c.answer(b"c-sched").await;
    assert_eq!((a["ok"].clone(), a["body"]["success"].clone()), (json!(true), json!(true)), "{a}");

    // The REST rules are the REST API's own: no token → 401, wrong role → 403, bad body → 400.
    c.command("ems/t3/cmd/reset", &json!({ "reason": "x" }), None, b"c-none", false).await;
    let a = c.answer(b"c-none").await;
    assert_eq!((a["ok"].clone(), a["status"].clone()), (json!(false), json!(401)), "{a}");
    c.command("ems/t3/cmd/control-modes", &body, Some(PROVIDER), b"c-role", false).await;
    assert_eq!(c.answer(b"c-role").await["status"], 403);
    c.command("ems/t3/cmd/reset", &json!({ "why": "x" }), Some(OPERATOR), b"c-bad", false).await;
    let a = c.answer(b"c-bad").await;
    assert_eq!(a["status"], 400, "{a}");
    assert!(a["body"]["error"].as_str().unwrap().contains("why"), "{a}");
    // Unknown command: a nack naming it.
    c.command("ems/t3/cmd/turbo", &json!({}), Some(OPERATOR), b"c-turbo", false).await;
    let a = c.answer(b"c-turbo").await;
    assert_eq!((a["status"].clone(), a["body"]["field"].clone()), (json!(404), json!("topic")), "{a}");
    // Audited as REST calls are.
    let audit = h.audit();
    assert!(
        audit.iter().any(|e| e.action.starts_with("POST /api/v1/reset") && e.actor.starts_with("ops")),
        "{audit:?}"
    );
    m.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_is_refused_and_not_executed() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t4"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t4-c", &["client/answers"]).await;
    let body = json!({ "ess": { "mode": "FORCE_CHARGE", "power": 3000 } });
    c.command("ems/t4/cmd/control-modes", &body, Some(OPERATOR), b"r-1", true).await;
    let a = c.answer(b"r-1").await;
    assert_eq!(
        (a["ok"].clone(), a["status"].clone(), a["body"]["field"].clone()),
        (json!(false), json!(400), json!("retain")),
        "{a}"
    );
    assert!(h.modes.lock().unwrap().active_override(rest_support::t0()).is_none(), "not executed");
    // The retained copy in the broker is never delivered to the gateway again (a reconnect
    // does not replay it).
    m.stop(Duration::from_secs(2)).await;
    let m = link(&h, &config(&broker.url(), "t4"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(m.stats().commands, 0);
    assert!(h.modes.lock().unwrap().active_override(rest_support::t0()).is_none());
    let audit = h.audit();
    assert!(audit.iter().any(|e| e.actor == "mqtt" && e.detail.contains("retained")), "{audit:?}");
    m.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_outside_the_prefix_or_without_response_topic_are_not_executed() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t5"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t5-c", &["client/answers"]).await;
    for topic in [
        "other/t5/cmd/emergency-stop",
        "ems/t5x/cmd/emergency-stop",
        "ems/t5/cmd/emergency-stop/x",
        "ems/cmd/emergency-stop",
    ] {
        c.command(topic, &Value::Null, Some(OPERATOR), b"o-1", false).await;
    }
    // No response topic: refused (audited), no answer, not executed.
    let props = PublishProperties {
        user_properties: vec![("authorization".to_owned(), format!("Bearer {OPERATOR}"))],
        ..PublishProperties::default()
    };
    c.client
        .publish_with_properties("ems/t5/cmd/emergency-stop", QoS::AtLeastOnce, false, Vec::new(), props)
        .await
        .unwrap();
    // A response topic inside the site's own topics: refused, nothing published there.
    let props = PublishProperties {
        response_topic: Some("ems/t5/cmd/emergency-stop".to_owned()),
        correlation_data: Some(b"loop".to_vec().into()),
        user_properties: vec![("authorization".to_owned(), format!("Bearer {OPERATOR}"))],
        ..PublishProperties::default()
    };
    c.client
        .publish_with_properties("ems/t5/cmd/reset", QoS::AtLeastOnce, false, b"{}".to_vec(), props)
        .await
        .unwrap();
    let p = c.next_on("client/answers", Duration::from_secs(2)).await;
    assert!(p.is_none(), "no answer: {p:?}");
    assert_eq!(*h.state.lock().unwrap(), ems_core::State::Idle, "no E-stop executed");
    let s = m.stats();
    assert_eq!((s.commands, s.refused), (0, 2), "{s:?}");
    m.stop(Duration::from_secs(2)).await;
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
fn certificates(dir: &Path) -> bool {
    let ext = dir.join("san.ext");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    // X.509 v3 for the client too: rustls refuses a v1 certificate.
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let steps: [&[&str]; 7] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=ems-test-ca",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.rsa",
            "-out",
            "client.csr",
            "-subj",
            "/CN=ems-gateway",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
        &["pkcs8", "-topk8", "-nocrypt", "-in", "client.rsa", "-out", "client.key"],
        &["version"],
    ];
    if !steps.iter().all(|a| openssl(dir, a)) {
        return false;
    }
    // Mosquitto started as root drops to its own user: it must be able to read them.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in std::fs::read_dir(dir).unwrap() {
        std::fs::set_permissions(f.unwrap().path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate() {
    let Some(bin) = mosquitto() else { return };
    let certs = tempfile::tempdir().unwrap();
    if !certificates(certs.path()) {
        eprintln!("SKIP: the openssl command is needed to make the test certificates");
        return;
    }
    let d = certs.path().display();
    let broker = Broker::start(
        &bin,
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n"
        ),
    );
    let h = harness();
    let url = format!("mqtts://127.0.0.1:{}", broker.port);
    let mut c = config(&url, "t6");
    c.tls = Some(TlsFiles {
        ca: certs.path().join("ca.pem"),
        client: Some((certs.path().join("client.pem"), certs.path().join("client.key"))),
    });
    let m = link(&h, &c);
    wait_connected(&m, 1).await;
    m.stop(Duration::from_secs(2)).await;
    // Without the client certificate the broker refuses the connection.
    c.tls = Some(TlsFiles { ca: certs.path().join("ca.pem"), client: None });
    let m = link(&h, &c);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = m.stats();
    assert!(!s.connected && s.connections == 0 && s.connect_failures > 0, "{s:?}");
    m.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_broker_restart() {
    let Some(bin) = mosquitto() else { return };
    let mut broker = Broker::start(&bin, "");
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t7"));
    wait_connected(&m, 1).await;
    broker.kill();
    // The site keeps publishing into the bounded outbox meanwhile; nothing blocks.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!m.stats().connected);
    broker.spawn();
    wait_connected(&m, 2).await;
    // The new broker knows nothing; the gateway announces itself and its state again.
    let mut c = Client::connect(broker.port, "t7-c", &["ems/t7/status", "ems/t7/state/#"]).await;
    let p = c.next_on("ems/t7/status", Duration::from_secs(5)).await.expect("birth after reconnect");
    assert_eq!(p.payload.as_ref(), b"online");
    let p =
        c.next_on("ems/t7/state/_sum/EssSoc", Duration::from_secs(5)).await.expect("state after reconnect");
    assert_eq!(p.payload.as_ref(), b"55.0");
    // Commands work on the new connection.
    let mut a = Client::connect(broker.port, "t7-a", &["client/answers"]).await;
    a.command("ems/t7/cmd/control-modes", &json!({}), Some(OPERATOR), b"after", false).await;
    assert_eq!(a.answer(b"after").await["status"], 200);
    m.stop(Duration::from_secs(2)).await;
}

fn link_with_db(h: &Harness, c: &MqttConfig, db: &std::sync::Arc<ems_api::db::Db>) -> Mqtt {
    h.view.send_replace(view());
    let links = MqttLinks {
        router: h.router.clone(),
        view: h.view.subscribe(),
        audit: Some(LoopAudit::Direct(h.store.clone())),
        db: Some(db.clone()),
        status: None,
    };
    Mqtt::start(c, links).unwrap()
}

/// The loop's stand-in: a new view every 50 ms, its state of charge counting up, so that every
/// batch is told apart by its timestamp and value.
fn ticking_view(h: &Harness) -> tokio::task::JoinHandle<()> {
    let tx = h.view.clone();
    tokio::spawn(async move {
        for i in 0u32.. {
            let mut v = view();
            v.channels.insert(channels::ESS_SOC.to_owned(), ChannelValue::Number(f64::from(i)));
            tx.send_replace(v);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Every history slice until `want` batches (by their sample counts) arrived.
async fn history(c: &mut Client, topic: &str, want: f64) -> Vec<Publish> {
    let mut got = Vec::new();
    let mut samples = 0.0;
    while samples < want {
        let p = c.next_on(topic, Duration::from_secs(20)).await.expect("a history slice");
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        samples +=
            v["bufferedData"].as_array().unwrap().iter().map(|e| e["samples"].as_f64().unwrap()).sum::<f64>();
        got.push(p);
    }
    got
}

async fn wait_resent(m: &Mqtt) {
    let until = Instant::now() + Duration::from_secs(30);
    while m.stats().buffered > 0 {
        assert!(Instant::now() < until, "the buffer was not resent: {:?}", m.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A link with its own database and broker, a ticking view, and a broker outage.
struct Outage {
    broker: Broker,
    _h: Harness,
    _dir: tempfile::TempDir,
    db: std::sync::Arc<ems_api::db::Db>,
    m: Mqtt,
    ticker: tokio::task::JoinHandle<()>,
    before: ems_api::mqtt::MqttStats,
}

impl Outage {
    /// Connect, let the first resend finish (what was taken before the first connection),
    /// then kill the broker for `secs`; the counters after that.
    async fn cut(
        bin: &Path,
        site: &str,
        secs: u64,
        set: impl FnOnce(&mut MqttConfig),
    ) -> (Self, ems_api::mqtt::MqttStats) {
        let mut broker = Broker::start(bin, "");
        let h = harness();
        let dir = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(ems_api::db::Db::open(dir.path().join("gw.sqlite")).unwrap());
        let mut c = config(&broker.url(), site);
        set(&mut c);
        let m = link_with_db(&h, &c, &db);
        let ticker = ticking_view(&h);
        wait_connected(&m, 1).await;
        wait_resent(&m).await;
        let before = m.stats();
        broker.kill();
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let during = m.stats();
        (Self { broker, _h: h, _dir: dir, db, m, ticker, before }, during)
    }

    /// Restart the broker, subscribe to `topics` before the link is back (its back-off is
    /// longer), wait for the resend; the subscriber and the counters after it.
    async fn restore(&mut self, id: &str, topics: &[&str]) -> (Client, ems_api::mqtt::MqttStats) {
        self.broker.spawn();
        let sub = Client::connect(self.broker.port, id, topics).await;
        wait_connected(&self.m, 2).await;
        wait_resent(&self.m).await;
        // Stop taking: the ticker's view no longer matters.
        self.ticker.abort();
        (sub, self.m.stats())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_of_a_broker_outage_is_buffered_in_the_database_and_resent_complete_in_order() {
    let Some(bin) = mosquitto() else { return };
    let (mut o, during) = Outage::cut(&bin, "t8", 3, |c| {
        c.slice_rows = 4;
        c.resend_jitter = Duration::from_millis(500);
    })
    .await;
    let (before, db) = (o.before.clone(), o.db.clone());
    assert!(!during.connected, "{during:?}");
    let taken = during.buffer_taken - before.buffer_taken;
    assert!(taken >= 8, "a batch every 200 ms for 3 s: {during:?}");
    assert_eq!(during.buffered, taken, "in the database: {during:?}");
    assert_eq!(db.outbox_len(ems_api::db::OutboxTable::Mqtt).unwrap() as u64, taken);
    assert_eq!((during.buffer_merged, during.buffer_dropped), (0, 0), "{during:?}");
    assert_eq!(during.buffer_rows, 20_000);
    let (mut sub, after) = o.restore("t8-h", &["ems/t8/history", "ems/t8/state/#"]).await;
    let taken = after.buffer_taken - before.buffer_taken;
    let slices = history(&mut sub, "ems/t8/history", taken as f64).await;
    let mut stamps = Vec::new();
    let mut soc = Vec::new();
    for p in &slices {
        assert!(!p.retain, "history is never retained");
        let v: Value = serde_json::from_slice(&p.payload).unwrap();
        let entries = v["bufferedData"].as_array().unwrap();
        assert!(!entries.is_empty() && entries.len() <= 4, "slices of at most 4: {}", entries.len());
        for e in entries {
            assert_eq!(e["samples"], 1, "nothing merged: {e}");
            stamps.push(e["timestamp"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap());
            soc.push(e["currentData"]["_sum/EssSoc"].as_f64().unwrap());
        }
    }
    assert_eq!(stamps.len() as u64, taken, "every batch of the gap, once");
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "oldest first, original timestamps: {stamps:?}");
    assert!(soc.windows(2).all(|w| w[0] < w[1]), "the values of their time: {soc:?}");
    assert_eq!(after.resent - before.resent, taken, "{after:?}");
    assert_eq!(after.resent_slices - before.resent_slices, slices.len() as u64, "{after:?}");
    assert_eq!((after.buffered, after.buffer_dropped), (0, 0), "{after:?}");
    assert_eq!(db.outbox_len(ems_api::db::OutboxTable::Mqtt).unwrap(), 0);
    // The live state is the newest, never a resent value.
    let p = sub.next_on("ems/t8/state/_sum/EssSoc", Duration::from_secs(3)).await.unwrap();
    let live: f64 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
    assert!(live >= *soc.last().unwrap(), "live {live} vs last resent {soc:?}");
    o.m.stop(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outage_buffer_merges_its_oldest_batches_and_loses_none() {
    let Some(bin) = mosquitto() else { return };
    let (mut o, during) = Outage::cut(&bin, "t9", 4, |c| {
        c.buffer_rows = 10;
        c.slice_rows = 3;
        c.resend_jitter = Duration::ZERO;
    })
    .await;
    let before = o.before.clone();
    let taken = during.buffer_taken - before.buffer_taken;
    assert!(taken > 10, "{during:?}");
    assert_eq!(during.buffered, 10, "bounded: {during:?}");
    assert_eq!(during.buffer_merged, taken - 10, "each batch over the bound is one merge: {during:?}");
    let (mut sub, after) = o.restore("t9-h", &["ems/t9/history"]).await;
    let taken = after.buffer_taken - before.buffer_taken;
    let slices = history(&mut sub, "ems/t9/history", taken as f64).await;
    let entries: Vec<Value> = slices
        .iter()
        .flat_map(|p| {
            serde_json::from_slice::<Value>(&p.payload).unwrap()["bufferedData"].as_array().unwrap().clone()
        })
        .collect();
    // The oldest lost resolution (one entry of many samples, from `timestamp` until `until`),
    // none was dropped: the sample counts add up to every batch taken.
    let samples: f64 = entries.iter().map(|e| e["samples"].as_f64().unwrap()).sum();
    assert_eq!(samples as u64, taken, "{entries:?}");
    assert!(
        entries[0]["samples"].as_f64().unwrap() > 1.0 && entries[0]["until"].is_string(),
        "{}",
        entries[0]
    );
    let stamps: Vec<jiff::Timestamp> =
        entries.iter().map(|e| e["timestamp"].as_str().unwrap().parse().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    assert_eq!((after.buffered, after.buffer_dropped), (0, 0), "{after:?}");
    o.m.stop(Duration::from_secs(2)).await;
}

fn retained_refusals(h: &Harness) -> usize {
    h.audit().iter().filter(|e| e.actor == "mqtt" && e.detail.contains("retained")).count()
}

/// H98: a command retained in the broker is refused once, and neither a reconnection of the
/// gateway (broker restarted with the message kept in its persistent store) nor a restart of
/// the link delivers it again: no second execution, no second answer, no second audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_is_not_replayed_after_a_reconnection_or_a_restart() {
    let Some(bin) = mosquitto() else { return };
    let store = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        // Mosquitto started as root drops to its own user: it must be able to write there.
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut broker =
        Broker::start(&bin, &format!("persistence true\npersistence_location {}/\n", store.path().display()));
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t10"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t10-c", &["client/answers"]).await;
    let body = json!({ "ess": { "mode": "FORCE_DISCHARGE", "power": 5000 } });
    c.command("ems/t10/cmd/control-modes", &body, Some(OPERATOR), b"ret-1", true).await;
    let a = c.answer(b"ret-1").await;
    assert_eq!((a["ok"].clone(), a["body"]["field"].clone()), (json!(false), json!("retain")), "{a}");
    let not_applied = |h: &Harness| h.modes.lock().unwrap().active_override(rest_support::t0()).is_none();
    assert!(not_applied(&h));
    assert_eq!((m.stats().commands, m.stats().refused, retained_refusals(&h)), (0, 1, 1));
    drop(c);

    // The broker restarts and keeps the retained command; the gateway reconnects.
    broker.terminate();
    broker.spawn();
    let mut probe = Client::connect(broker.port, "t10-p", &["ems/t10/cmd/#"]).await;
    let p = probe.next_on("ems/t10/cmd/control-modes", Duration::from_secs(3)).await;
    assert!(p.is_some_and(|p| p.retain), "the broker still holds the retained command");
    let mut c = Client::connect(broker.port, "t10-c2", &["client/answers"]).await;
    wait_connected(&m, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = m.stats();
    assert_eq!((s.commands, s.refused), (0, 1), "not delivered again after the reconnection: {s:?}");
    assert_eq!(retained_refusals(&h), 1, "no second audit row");
    assert!(c.next_on("client/answers", Duration::from_millis(500)).await.is_none(), "no second answer");
    assert!(not_applied(&h));

    // A new link (a gateway restart) does not get it either.
    m.stop(Duration::from_secs(2)).await;
    let m = link(&h, &config(&broker.url(), "t10"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!((m.stats().commands, m.stats().refused), (0, 0), "{:?}", m.stats());
    assert_eq!(retained_refusals(&h), 1);
    assert!(c.next_on("client/answers", Duration::from_millis(500)).await.is_none());
    assert!(not_applied(&h));
    m.stop(Duration::from_secs(2)).await;
}

/// Every REST call of the link takes 50 ms: commands arrive faster than they are done.
async fn slow(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    tokio::time::sleep(Duration::from_millis(50)).await;
    next.run(req).await
}

/// H120: commands faster than they can be done fill the bounded queue (16 waiting); the rest
/// are refused at once with 503 naming why, each answered and audited, none lost silently;
/// the E-stop does not wait behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_flood_is_refused_with_503_beyond_the_bounded_queue_and_the_e_stop_passes() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    h.view.send_replace(view());
    let links = MqttLinks {
        router: h.router.clone().layer(axum::middleware::from_fn(slow)),
        view: h.view.subscribe(),
        audit: Some(LoopAudit::Direct(h.store.clone())),
        db: None,
        status: None,
    };
    let m = Mqtt::start(&config(&broker.url(), "t11"), links).unwrap();
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t11-c", &["client/answers"]).await;
    const N: usize = 40;
    let body = json!({ "ess": { "mode": "LIMIT_CHARGE", "maxChargePower": 1000 } });
    for i in 0..N {
        c.command("ems/t11/cmd/control-modes", &body, Some(OPERATOR), format!("f-{i}").as_bytes(), false)
            .await;
    }
    c.command("ems/t11/cmd/emergency-stop", &Value::Null, Some(OPERATOR), b"f-stop", false).await;
    let mut statuses = std::collections::BTreeMap::new();
    let mut done_before_stop = None;
    for _ in 0..=N {
        let p =
            c.next_on("client/answers", Duration::from_secs(20)).await.expect("every command is answered");
        let corr = p.properties.as_ref().and_then(|p| p.correlation_data.clone()).unwrap();
        let a: Value = serde_json::from_slice(&p.payload).unwrap();
        if corr.as_ref() == b"f-stop" {
            assert_eq!(a["body"]["state"], "STOPPED", "{a}");
            done_before_stop = Some(statuses.values().filter(|s| **s == 200).count());
            continue;
        }
        let st = a["status"].as_u64().unwrap();
        if st == 503 {
            assert!(a["body"]["error"].as_str().unwrap().contains("busy"), "{a}");
        }
        assert!(statuses.insert(corr.to_vec(), st).is_none(), "one answer per command");
    }
    let busy = statuses.values().filter(|s| **s == 503).count();
    let done = statuses.values().filter(|s| **s == 200).count();
    assert_eq!(busy + done, N, "{statuses:?}");
    assert!(done > ems_api::mqtt::link::COMMAND_QUEUE, "the queue's 16 and the one in hand: {done}");
    assert!(busy >= 10, "the rest refused at once: {busy}");
    // The E-stop is answered long before the queue is worked off.
    let before = done_before_stop.unwrap();
    assert!(before < done / 2, "E-stop answered after {before} of {done} queued commands");
    let s = m.stats();
    assert_eq!((s.commands as usize, s.refused as usize), (done + 1, busy), "{s:?}");
    let audited = h.audit().iter().filter(|e| e.actor == "mqtt" && e.detail.contains("busy")).count();
    assert_eq!(audited, busy);
    m.stop(Duration::from_secs(2)).await;
}

/// H121: a command payload over the REST body limit (64 KiB) is refused with 413 naming its
/// size; a packet over the link's maximum packet size (128 KiB, announced to the broker) is
/// never delivered to the gateway at all; the link stays up and takes the next command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_command_is_refused_naming_its_size_and_a_huge_one_never_arrives() {
    let Some(bin) = mosquitto() else { return };
    let broker = Broker::start(&bin, "");
    let h = harness();
    let m = link(&h, &config(&broker.url(), "t12"));
    wait_connected(&m, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut c = Client::connect(broker.port, "t12-c", &["client/answers"]).await;
    // Valid JSON padded past 64 KiB: refused before it is parsed.
    let pad = "x".repeat(100 * 1024);
    let body = json!({ "reason": pad });
    let size = body.to_string().len();
    c.command("ems/t12/cmd/reset", &body, Some(OPERATOR), b"big", false).await;
    let a = c.answer(b"big").await;
    assert_eq!((a["ok"].clone(), a["status"].clone()), (json!(false), json!(413)), "{a}");
    let e = a["body"]["error"].as_str().unwrap();
    assert!(e.contains(&format!("payload of {size} bytes")) && e.contains("65536"), "{e}");
    // Over the maximum packet size: the broker does not forward it to the gateway.
    let body = json!({ "reason": "y".repeat(200 * 1024) });
    c.command("ems/t12/cmd/reset", &body, Some(OPERATOR), b"huge", false).await;
    assert!(
        c.next_on("client/answers", Duration::from_secs(1)).await.is_none(),
        "no answer to a packet never delivered"
    );
    let s = m.stats();
    assert!(s.connected && s.connections == 1, "the link stays up: {s:?}");
    assert_eq!((s.commands, s.refused), (0, 1), "{s:?}");
    // And takes the next command.
    c.command("ems/t12/cmd/control-modes", &json!({}), Some(OPERATOR), b"next", false).await;
    assert_eq!(c.answer(b"next").await["status"], 200);
    m.stop(Duration::from_secs(2)).await;
}
