//! A fault proxy between phones and the real server binary, as independent testers
//! put one between clients and other sync engines: each connection through it meets
//! a fault. Refused (a partition: the request never arrives), the request cut off
//! mid-body, the response lost after the server acted on the request, the response
//! cut off mid-body, the response delayed, the request delivered twice. Several phones
//! log visits and sync through it for a bounded run; then the network heals. Every
//! visit logged must end on the server exactly once, nothing may be quarantined, and
//! every phone must converge with the server.
//!
//! `LINLI_PROXY_VISITS` sets the visits each phone logs (CI: 12); `LINLI_PROXY_SEED`
//! the faults' seed (printed by every run).

use crate::backends::{TestStore, conformance};
use crate::binary::{Data, login, put, stored_visits};
use crate::phone::Phone;
use reqwest::Client;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use sync_core::protocol::store::ServerStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Pass,
    /// Closed at once: the request never reaches the server.
    Refuse,
    /// The server gets the headers and half the body, then the connection closes.
    CutRequest,
    /// The server answers; the phone never hears it.
    LoseResponse,
    /// The phone gets half the response.
    CutResponse,
    /// The response arrives 50 to 400 ms late.
    Delay,
    /// The server gets the request twice; the phone the second answer.
    Duplicate,
}

const EVERY_FAULT: [Fault; 7] = [
    Fault::Pass,
    Fault::Refuse,
    Fault::CutRequest,
    Fault::LoseResponse,
    Fault::CutResponse,
    Fault::Delay,
    Fault::Duplicate,
];

/// xorshift64*: enough randomness for a fault schedule, and replayable by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct FaultProxy {
    base: String,
    faulty: Arc<AtomicBool>,
    injected: Arc<Mutex<BTreeMap<Fault, u32>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    async fn start(upstream: SocketAddr, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let faulty = Arc::new(AtomicBool::new(true));
        let injected = Arc::new(Mutex::new(BTreeMap::new()));
        let (f, inj) = (faulty.clone(), injected.clone());
        let task = tokio::spawn(async move {
            let mut rng = Rng(seed | 1);
            let mut n = 0_usize;
            while let Ok((client, _)) = listener.accept().await {
                // Every fault once first, then at random, half the connections clean.
                let fault = if !f.load(Ordering::SeqCst) {
                    Fault::Pass
                } else if n < EVERY_FAULT.len() {
                    EVERY_FAULT[n]
                } else if rng.below(2) == 0 {
                    Fault::Pass
                } else {
                    EVERY_FAULT[1 + rng.below(6) as usize]
                };
                n += 1;
                *inj.lock().unwrap().entry(fault).or_default() += 1;
                let delay = Duration::from_millis(50 + rng.below(350));
                tokio::spawn(relay(client, upstream, fault, delay));
            }
        });
        FaultProxy {
            base,
            faulty,
            injected,
            task,
        }
    }

    fn heal(&self) {
        self.faulty.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request: its head (with `Connection: close` put in, so the
/// server closes after answering) and the body its Content-Length announces.
async fn read_request(client: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let mut lines: Vec<&str> = head.trim_end().split("\r\n").collect();
    lines.retain(|l| {
        !l.split_once(':')
            .is_some_and(|(name, _)| name.eq_ignore_ascii_case("connection"))
    });
    lines.insert(1, "Connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    Ok((head.into_bytes(), body))
}

/// Sends a request to the server on a connection of its own and reads the answer.
async fn exchange(upstream: SocketAddr, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(head).await?;
    server.write_all(body).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    Ok(response)
}

async fn relay(mut client: TcpStream, upstream: SocketAddr, fault: Fault, delay: Duration) {
    let Ok((head, body)) = read_request(&mut client).await else {
        return;
    };
    let answer = match fault {
        Fault::Refuse => return,
        Fault::CutRequest => {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = server.write_all(&head).await;
                let _ = server.write_all(&body[..body.len() / 2]).await;
                let _ = server.shutdown().await;
            }
            return;
        }
        Fault::Duplicate => {
            let _ = exchange(upstream, &head, &body).await;
            exchange(upstream, &head, &body).await
        }
        _ => exchange(upstream, &head, &body).await,
    };
    let Ok(answer) = answer else { return };
    match fault {
        Fault::LoseResponse => {}
        Fault::CutResponse => {
            let _ = client.write_all(&answer[..answer.len() / 2]).await;
        }
        Fault::Delay => {
            tokio::time::sleep(delay).await;
            let _ = client.write_all(&answer).await;
        }
        _ => {
            let _ = client.write_all(&answer).await;
        }
    }
    let _ = client.shutdown().await;
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn every_visit_through_the_fault_proxy_lands_once(t: TestStore) {
    let visits = env_number("LINLI_PROXY_VISITS", 12);
    let seed = env_number("LINLI_PROXY_SEED", server::now_ms().unsigned_abs());
    eprintln!("fault proxy: seed {seed}, {visits} visits per phone");
    let data = Data {
        dir: tempfile::tempdir().unwrap(),
        url: t.url.clone(),
    };
    let site = data.set_up("staff", &["wang", "li", "zhao"]);
    let process = data.start().await;
    let base = process.base.clone();
    let token = login(&base, "staff", &site.password).await;
    let mut staff = Phone::enrol(&base, &site.coordinator_code).await;
    let residents = [
        staff.register(site.station, "王阿婆"),
        staff.register(site.station, "李老伯"),
    ];
    staff.sync().await.unwrap();
    let mut phones = Vec::new();
    for (volunteer, code) in site.volunteers.iter().zip(&site.codes) {
        for r in residents {
            put(&base, &token, *volunteer, r).await;
        }
        let mut phone = Phone::enrol(&base, code).await;
        phone.sync().await.unwrap();
        phones.push(phone);
    }
    phones.push(staff);

    // Through the proxy, one connection per request, so every request meets its own
    // fault; a lost answer is given up on after 10 s.
    let upstream: SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let proxy = FaultProxy::start(upstream, seed).await;
    let client = Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for phone in &mut phones {
        phone.base = proxy.base.clone();
        phone.set_client(client.clone());
    }

    // The volunteers log and sync; station staff syncs and reviews what reached it.
    let mut tasks = Vec::new();
    for (i, mut phone) in phones.into_iter().enumerate() {
        let is_staff = i == 3;
        tasks.push(tokio::spawn(async move {
            let mut logged = BTreeSet::new();
            let mut failed = 0_u32;
            for n in 0..visits {
                if !is_staff {
                    let r = residents[usize::try_from(n).unwrap() % residents.len()];
                    logged.insert(phone.log_visit(r, &format!("第 {n} 次探访")));
                }
                if phone.sync().await.is_err() {
                    failed += 1;
                }
                if is_staff {
                    phone.approve_all(&residents);
                }
            }
            (phone, logged, failed)
        }));
    }
    let mut phones = Vec::new();
    let mut logged = BTreeSet::new();
    let mut failed = 0;
    for task in tasks {
        let (phone, l, f) = task.await.unwrap();
        phones.push(phone);
        logged.extend(l);
        failed += f;
    }
    let injected = proxy.injected.lock().unwrap().clone();
    eprintln!(
        "fault proxy: {injected:?}; {failed} syncs failed of {}",
        4 * visits
    );
    for fault in EVERY_FAULT {
        assert!(
            injected.contains_key(&fault),
            "{fault:?} was never injected"
        );
    }

    // The network heals: each phone syncs until settled, twice round, so each has
    // what the others sent.
    proxy.heal();
    for _ in 0..2 {
        for phone in &mut phones {
            phone.sync().await.unwrap();
        }
    }

    // Every visit once on the server, in the documents and the projections.
    assert_eq!(stored_visits(&data.url, &residents).await, logged);
    let rows = t.count("SELECT COUNT(*) FROM visit_rows", None).await;
    assert_eq!(
        rows,
        i64::try_from(logged.len()).unwrap(),
        "one row per visit"
    );
    assert!(
        t.store.quarantined(10).await.unwrap().is_empty(),
        "nothing refused"
    );
    // Every phone holds exactly the server's documents.
    for r in residents {
        let server_heads = t.store.load(r.into()).await.unwrap().unwrap().get_heads();
        for phone in &phones {
            phone.assert_converged(r, &server_heads);
        }
    }
    assert!(t.store.check().await.unwrap().problems.is_empty());
    drop(process);
}

conformance!(every_visit_through_the_fault_proxy_lands_once);
