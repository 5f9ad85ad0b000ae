//! The server's configuration: flags and environment (clap), checked at start.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A secret setting: usable, never shown by `Debug` or `Display`.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"[redacted]\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// `linli-server`: the sync service, or an operator command.
#[derive(Debug, Parser)]
#[command(
    name = "server",
    version,
    about = "Linli's sync service and operator commands"
)]
pub struct Cli {
    /// Where and how to reach the database.
    #[command(flatten)]
    pub config: Config,
    /// An operator command; without one, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Settings shared by the service and the operator commands.
#[derive(Debug, Args, Clone)]
pub struct Config {
    /// The data directory: the default SQLite database and the signing key live here.
    #[arg(
        long,
        env = "LINLI_DATA_DIR",
        default_value = "linli-data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// The database: `sqlite://path` or `postgres://user:password@host/db`. Defaults to
    /// `linli.db` in the data directory.
    #[arg(long, env = "LINLI_DATABASE_URL", global = true)]
    pub database_url: Option<Secret>,
    /// The key that signs access tokens: at least 32 bytes. Defaults to a random key
    /// kept in the data directory (`signing.key`). Give every server process sharing a
    /// database the same key.
    #[arg(long, env = "LINLI_SIGNING_KEY", global = true)]
    pub signing_key: Option<Secret>,
    /// The address to listen on.
    #[arg(
        long,
        env = "LINLI_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,
    /// Log format.
    #[arg(long, env = "LINLI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Largest request body in bytes (sync uploads included).
    #[arg(long, env = "LINLI_MAX_BODY", default_value_t = 16 << 20, global = true)]
    pub max_body: usize,
    /// Seconds a request may take before it is answered with 503.
    #[arg(
        long,
        env = "LINLI_REQUEST_TIMEOUT",
        default_value_t = 60,
        global = true
    )]
    pub request_timeout_secs: u64,
    /// Database connections.
    #[arg(long, env = "LINLI_DB_CONNECTIONS", default_value_t = 8, global = true)]
    pub db_connections: u32,
    /// Loaded documents kept in memory.
    #[arg(long, env = "LINLI_CACHE_DOCS", default_value_t = 2048, global = true)]
    pub cache_docs: usize,

    /// Mark the web pages' sign-in cookie `Secure` (sent over HTTPS only). Set it
    /// whenever the pages are served over HTTPS, as they should be beyond localhost.
    #[arg(long, env = "LINLI_SECURE_COOKIES", global = true)]
    pub secure_cookies: bool,
    /// Seed a fictional sub-district (梧桐街道) to try the web pages with: only into an
    /// empty database (use a fresh --data-dir), never beside real data.
    #[arg(long, env = "LINLI_DEMO")]
    pub demo: bool,
}

impl Config {
    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// The database URL, defaulting to a SQLite file in the data directory.
    pub fn database_url(&self) -> Secret {
        match &self.database_url {
            Some(url) => url.clone(),
            None => Secret(format!(
                "sqlite://{}",
                self.data_dir.join("linli.db").display()
            )),
        }
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Operator commands. Each opens the database, does one thing and exits.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sync service (the default).
    Serve,
    /// Create a district.
    CreateDistrict {
        /// Its name, unique.
        name: String,
    },
    /// Create a community service station in a district.
    CreateStation {
        /// The district's name.
        #[arg(long)]
        district: String,
        /// The station's name, unique within the district.
        name: String,
    },
    /// Create a user. Coordinators and admins get a password (printed once).
    CreateUser {
        /// The login name, unique.
        login: String,
        /// The name shown to others.
        #[arg(long)]
        display_name: Option<String>,
        /// volunteer, station_staff, coordinator or admin.
        #[arg(long)]
        role: String,
        /// The district's name (every role but a bootstrap admin has one).
        #[arg(long)]
        district: Option<String>,
        /// For station staff: the stations covered, by name (repeatable).
        #[arg(long = "station")]
        stations: Vec<String>,
    },
    /// Issue a one-time enrolment code for a user's phone.
    IssueEnrolmentCode {
        /// The user's login.
        login: String,
    },
    /// Revoke a device: its tokens stop working and it is told to purge its data.
    RevokeDevice {
        /// The device id.
        device: uuid::Uuid,
    },
    /// Erase the personal data of every case file closed longer ago than the retention
    /// period (run it daily, from cron or a systemd timer). Visits stay, anonymised, for
    /// the statistics; phones delete the files at their next sync.
    Retention {
        /// Keep closed case files this many days after closing, then erase them.
        #[arg(long, env = "LINLI_RETENTION_CLOSED_DAYS", value_parser = clap::value_parser!(u32).range(1..=36500))]
        closed_days: u32,
        /// List what would be erased, and erase nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a station hub (or enrol one first): phones at the station sync with it over
    /// the LAN, and it forwards what they send to the district server whenever the
    /// uplink works.
    Hub {
        /// Enrol this hub first.
        #[command(subcommand)]
        action: Option<HubAction>,
        /// Seconds between exchanges with the district server while nothing happens
        /// (a phone's upload starts one at once).
        #[arg(long, env = "LINLI_HUB_EVERY", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
        every_secs: u64,
    },
    /// Rebuild the read-side projections from the documents.
    RebuildProjections,
    /// Check the database: every document loads and matches its stored heads.
    Check,
}

/// What `server hub` does besides serving.
#[derive(Debug, Subcommand)]
pub enum HubAction {
    /// Exchange a hub code (from the station's page on the district server) for this
    /// hub's credential, kept in the data directory.
    Enrol {
        /// The district server's address, e.g. `https://linli.example.org`.
        #[arg(long, env = "LINLI_HUB_UPSTREAM")]
        upstream: String,
        /// The one-time hub code.
        #[arg(long)]
        code: Secret,
        /// A name for people.
        #[arg(long, default_value = "station hub")]
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let cli = Cli::try_parse_from([
            "server",
            "--database-url",
            "postgres://linli:hunter2-password@db/linli",
            "--signing-key",
            "a-signing-key-of-at-least-32-bytes!!",
        ])
        .unwrap();
        let shown = format!("{cli:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("signing-key-of"));
        assert!(shown.contains("[redacted]"));
        assert_eq!(
            cli.config.database_url().expose(),
            "postgres://linli:hunter2-password@db/linli"
        );
    }

    #[test]
    fn the_default_database_is_a_file_in_the_data_directory() {
        let cli = Cli::try_parse_from(["server", "--data-dir", "/srv/linli"]).unwrap();
        assert_eq!(
            cli.config.database_url().expose(),
            "sqlite:///srv/linli/linli.db"
        );
        assert!(cli.command.is_none());
    }

    #[test]
    fn a_wrong_setting_is_an_error_not_a_panic() {
        assert!(Cli::try_parse_from(["server", "--bind", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["server", "--log-format", "xml"]).is_err());
    }
}
