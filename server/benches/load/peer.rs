//! The peer, side by side (issue 14): the same workload against a samod sync server.
//!
//! [samod](https://crates.io/crates/samod) is automerge-repo in Rust, wire compatible
//! with the JavaScript sync servers, on the same automerge 0.12 as Linli. The bench runs
//! it as a sync server in its own process (this bench binary again, started with
//! [`SERVE_ENV`] naming its storage directory), the way automerge-repo's sync server
//! is set up:
//!
//! * samod's tokio filesystem storage (it writes each change to a file; it does not
//!   fsync, where Linli's SQLite commits with `synchronous=FULL`);
//! * every peer may write, and the server announces nothing (it answers for the
//!   documents a peer asks about, as `sharePolicy: false` does in the JS server);
//! * samod's length-delimited framing over one long-lived TCP connection per phone
//!   (no WebSocket or HTTP layer, which would only add to samod's cost).
//!
//! samod checks nothing: no authentication, no scope, no rules, no projections for the
//! coordinators' pages, no receipts. What it does per visit is the least any Automerge
//! sync server does: receive the change, apply it, store it, and tell the phone it has
//! it.
//!
//! The phones are Linli's load phones after their measured windows, with the same case
//! files (their whole histories, copied into samod documents). A visit is written as in
//! Linli's window (`CaseFile::log_visit`, the rules' check on the phone included); its
//! change is applied to the phone's samod document, and the sync is done when samod
//! reports that the server has the phone's heads (`DocHandle::they_have_our_changes`).

use super::{
    Load, Phone, PhoneTally, Run, clock_ticks, cpu_seconds, loopback_bytes, reset_peak_rss,
    status_kb,
};
use samod::storage::TokioFilesystemStorage;
use samod::{BackoffConfig, ConnectionId, DocHandle, PeerId, Repo, ShareConfig};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use sync_core::automerge::ReadDoc;

/// Set in the child process: the directory samod stores its documents in.
pub const SERVE_ENV: &str = "LINLI_LOAD_SAMOD_SERVE";

/// Longest a phone waits for the server to have a visit in a window.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);

/// How long samod may take to hold every phone's case files before the window. Its hub
/// connects every connection to every document it holds on each event it handles, so
/// at 200 phones and 1,000 case files the set-up alone runs for many minutes; the bench
/// reports how far it got instead of waiting without end.
const SETUP_LIMIT: Duration = Duration::from_secs(300);

/// The child process: a samod sync server on `127.0.0.1:0`, storing into `dir`. Prints
/// its address, then serves until it is killed.
pub fn serve(dir: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let repo = Repo::build_tokio()
            .with_storage(TokioFilesystemStorage::new(dir))
            .with_peer_id(PeerId::from("linli-bench-samod-server"))
            .with_share_policy(ShareConfig::read_write().with_announce(false))
            .load()
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = repo
            .make_acceptor(format!("tcp://{address}").parse().unwrap())
            .unwrap();
        println!("samod listening on {address}");
        loop {
            let (io, _) = listener.accept().await.unwrap();
            io.set_nodelay(true).unwrap();
            acceptor.accept_tokio_io(io).unwrap();
        }
    })
}

/// The samod server process, killed when dropped.
struct SamodServer {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl SamodServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(SERVE_ENV, dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines
            .next()
            .expect("the samod server exited before printing its address")
            .unwrap();
        let address = first
            .strip_prefix("samod listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        std::thread::spawn(move || lines.for_each(drop));
        SamodServer {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for SamodServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dials the server over TCP with Nagle off, as Linli's HTTP client does.
struct NoDelayDialer(SocketAddr);

impl samod::Dialer for NoDelayDialer {
    type Error = std::convert::Infallible;

    fn url(&self) -> samod::Url {
        format!("tcp://{}", self.0).parse().unwrap()
    }

    fn connect(
        &self,
    ) -> futures_util::future::BoxFuture<
        'static,
        Result<samod::Transport, samod::DialError<Self::Error>>,
    > {
        let address = self.0;
        Box::pin(async move {
            let io = tokio::net::TcpStream::connect(address)
                .await
                .map_err(samod::DialError::transient)?;
            io.set_nodelay(true).map_err(samod::DialError::transient)?;
            Ok(samod::Transport::from_tokio_io(io))
        })
    }
}

/// A Linli load phone speaking samod: its case files as samod documents.
struct PeerPhone {
    phone: Phone,
    connection: ConnectionId,
    /// One per case file, in the order of `phone.files`.
    documents: Vec<DocHandle>,
}

impl PeerPhone {
    /// Connects `phone` to the server and hands it its case files, waiting until the
    /// server has every one.
    /// `repos` gets the phone's repo as soon as it exists, so that a set-up cut short
    /// can still stop it.
    async fn connect(
        phone: Phone,
        server: SocketAddr,
        taken: Arc<AtomicUsize>,
        repos: Arc<Mutex<Vec<Repo>>>,
    ) -> Self {
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(format!("phone-{}", phone.n)))
            .load()
            .await;
        repos.lock().unwrap().push(repo.clone());
        let dialer = repo
            .dial(BackoffConfig::default(), Arc::new(NoDelayDialer(server)))
            .unwrap();
        tokio::time::timeout(SYNC_TIMEOUT, dialer.established())
            .await
            .expect("samod: no connection in 30 s")
            .unwrap();
        let connection = dialer.connection_id().unwrap();
        let mut documents = Vec::with_capacity(phone.files.len());
        for file in &phone.files {
            let document = repo.create(file.doc().clone()).await.unwrap();
            document.they_have_our_changes(connection).await;
            taken.fetch_add(1, Ordering::Relaxed);
            documents.push(document);
        }
        PeerPhone {
            phone,
            connection,
            documents,
        }
    }

    /// One visit: written as in Linli's window, then synced until the server has it.
    async fn exchange(&mut self) -> Result<Duration, String> {
        let (i, hash) = self.phone.write_visit();
        let change = self.phone.files[i]
            .doc()
            .get_change_by_hash(&hash)
            .ok_or("the new visit's change is missing")?;
        let started = Instant::now();
        let document = &self.documents[i];
        document
            .with_document(|doc| doc.apply_changes([change]))
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(
            SYNC_TIMEOUT,
            document.they_have_our_changes(self.connection),
        )
        .await
        .map_err(|_| "samod: the server did not have the visit in 30 s".to_owned())?;
        Ok(started.elapsed())
    }
}

/// A samod window that could not run: the server had not taken every phone's case
/// files within [`SETUP_LIMIT`].
pub struct Unfinished {
    pub phones: usize,
    pub case_files: usize,
    pub taken: usize,
    pub secs: f64,
}

/// Runs Linli's phones against a samod server for `secs`, one new visit per sync, in a
/// closed loop; reports the window as a [`Run`] of backend `samod`, with how long the
/// set-up took in seconds.
pub async fn closed_loop(phones: Vec<Phone>, secs: f64) -> Result<(Run, f64), Unfinished> {
    let server = SamodServer::start();
    let (count, case_files) = (
        phones.len(),
        phones.iter().map(|p| p.files.len()).sum::<usize>(),
    );
    eprintln!(
        "samod: server {} (pid {}); handing {count} phones their {case_files} case files",
        server.address,
        server.child.id(),
    );
    let setup = Instant::now();
    let taken = Arc::new(AtomicUsize::new(0));
    let repos = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    for phone in phones {
        let (gate, taken, repos) = (gate.clone(), taken.clone(), repos.clone());
        let address = server.address;
        tasks.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            PeerPhone::connect(phone, address, taken, repos).await
        });
    }
    let Ok(phones) = tokio::time::timeout(SETUP_LIMIT, tasks.join_all()).await else {
        stop(&repos).await;
        return Err(Unfinished {
            phones: count,
            case_files,
            taken: taken.load(Ordering::Relaxed),
            secs: setup.elapsed().as_secs_f64(),
        });
    };
    let setup = setup.elapsed().as_secs_f64();
    eprintln!("samod: set up in {setup:.1} s; measuring ({secs} s one new visit)");

    let ticks = clock_ticks();
    let pid = server.child.id();
    let peak_rss_window = reset_peak_rss(pid);
    let server_cpu = cpu_seconds(&pid.to_string(), ticks);
    let client_cpu = cpu_seconds("self", ticks);
    let wire = loopback_bytes();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for mut phone in phones {
        tasks.spawn(async move {
            let mut tally = PhoneTally::default();
            while Instant::now() < deadline {
                tally.record(phone.exchange().await);
            }
            tally
        });
    }
    let mut latencies = Vec::new();
    let (mut errors, mut first_error) = (0, None);
    while let Some(done) = tasks.join_next().await {
        let tally = done.unwrap();
        latencies.extend(tally.latencies);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let wire = loopback_bytes() - wire;
    let server_cpu = cpu_seconds(&pid.to_string(), ticks) - server_cpu;
    let client_cpu = cpu_seconds("self", ticks) - client_cpu;
    let peak_rss_kb = status_kb(pid, "VmHWM");
    stop(&repos).await;
    latencies.sort_unstable();
    let run = Run {
        backend: "samod".into(),
        load: Load::NewVisit,
        elapsed,
        latencies,
        errors,
        first_error,
        late: 0,
        server_cpu,
        db_cpu: None,
        client_cpu,
        peak_rss_kb,
        peak_rss_window,
        wire_bytes: wire,
    };
    Ok((run, setup))
}

/// Stops the phones' repos. They run tasks of their own, which would otherwise go on
/// dialling the stopped server through the windows that follow.
async fn stop(repos: &Mutex<Vec<Repo>>) {
    let repos = std::mem::take(&mut *repos.lock().unwrap());
    for repo in repos {
        repo.stop().await;
    }
}
