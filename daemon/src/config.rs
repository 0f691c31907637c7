//! One configuration schema, read from TOML, overridable by `ARCLOCK_*`
//! environment variables, and validated once at start with errors that name the key.
//!
//! Override names are `ARCLOCK_<SECTION>_<KEY>` in upper case, e.g.
//! `ARCLOCK_SERVER_LISTEN=0.0.0.0:443`; values are parsed as TOML scalars
//! (numbers, booleans) and fall back to strings. Secrets never go here: the HSM
//! PIN and the MongoDB URI are read from files (or systemd credentials) whose
//! paths the config names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variables starting with `ARCLOCK_` that are not config overrides.
const NOT_OVERRIDES: &[&str] = &[
    "ARCLOCK_ALLOW_ROOT",
    "ARCLOCK_CONFIG",
    "ARCLOCK_FACES_DIR",
    "ARCLOCK_LFW_MD5",
    "ARCLOCK_LFW_URL",
    "ARCLOCK_MIRROR",
    "ARCLOCK_STATE_DIR",
];

/// A configuration problem, naming the key (or variable) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment override {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub hsm: Hsm,
    pub store: Store,
    pub models: Models,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub admin: Admin,
    #[serde(default)]
    pub camera: Camera,
    #[serde(default)]
    pub liveness: Liveness,
    #[serde(default)]
    pub app: BrowserApp,
    #[serde(default)]
    pub registration: Registration,
}

/// How much a face must prove that it is live (`off` < `passive` < `active`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LivenessMode {
    /// One photo, compared as it is: a photo of the user opens the account.
    Off,
    /// One photo (or a challenge answer), scored by passive PAD: refuses
    /// printouts and screens the PAD models recognise, not a replayed upload.
    Passive,
    /// Only an answer to a server-drawn head-pose challenge (several frames:
    /// pose, 3-D motion, one person), with passive PAD on every frame.
    Active,
}

impl LivenessMode {
    /// The spelling in the config file and in health answers.
    pub fn as_str(self) -> &'static str {
        match self {
            LivenessMode::Off => "off",
            LivenessMode::Passive => "passive",
            LivenessMode::Active => "active",
        }
    }
}

/// What happens when passive PAD is wanted but its models are not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PadUnavailable {
    /// Fail closed: face requests answer 503 until the models are installed.
    Refuse,
    /// Go on without PAD (logged at start and shown in health and console).
    Allow,
}

/// Presentation-attack detection: the policy per flow, the challenge
/// lifetime and the measured operating point (`models/README.md`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Liveness {
    /// Sign-in (`login`, `verify-face`). `passive` keeps the mobile app's
    /// one-photo flow working; `active` requires a challenge.
    pub signin: LivenessMode,
    /// Registration.
    pub registration: LivenessMode,
    pub pad_unavailable: PadUnavailable,
    /// Seconds a drawn challenge may be answered in.
    pub challenge_ttl_secs: u64,
    pub thresholds: arclock_face::liveness::Thresholds,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            signin: LivenessMode::Passive,
            registration: LivenessMode::Passive,
            pad_unavailable: PadUnavailable::Refuse,
            challenge_ttl_secs: 60,
            thresholds: Default::default(),
        }
    }
}

impl Liveness {
    /// Whether any flow scores faces with PAD.
    pub fn wants_pad(&self) -> bool {
        self.signin >= LivenessMode::Passive || self.registration >= LivenessMode::Passive
    }
}

/// Who may enrol through the public API (`POST /api/auth/register`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registration {
    pub mode: RegistrationMode,
    /// How long an invitation lasts unless the operator says otherwise.
    pub invite_ttl_secs: u64,
}

impl Default for Registration {
    fn default() -> Self {
        Registration {
            mode: RegistrationMode::Open,
            invite_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// `open`: anyone (the mobile app's behaviour; `USER_EXISTS` tells a caller
/// that an address has an account). `invite`: only with a single-use code an
/// operator made (`arclock-console invite`). `closed`: only operators enrol
/// (the kiosk camera); the API answers 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrationMode {
    Open,
    Invite,
    Closed,
}

/// The browser reference client at `/app/` (`daemon/app/`): on by default so
/// that `make run` ends with something a person can use; an appliance that
/// only serves the mobile app turns it off and `/app/` answers 404.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrowserApp {
    pub enabled: bool,
}

impl Default for BrowserApp {
    fn default() -> Self {
        BrowserApp { enabled: true }
    }
}

/// A local V4L2 camera for a kiosk or door appliance (off by default; the
/// systemd unit needs the camera drop-in for device access).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Camera {
    pub enabled: bool,
    pub device: PathBuf,
    /// Requested frame size; the driver may choose the nearest it has.
    pub width: u32,
    pub height: u32,
    /// Frames dropped first while exposure settles.
    pub warmup: usize,
    /// Frames captured and embedded; the best face among them is used.
    pub burst: usize,
}

impl Default for Camera {
    fn default() -> Self {
        Camera {
            enabled: false,
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            warmup: 5,
            burst: 5,
        }
    }
}

/// The operator socket: a Unix socket (mode 0660) that `arclock-console`
/// speaks to. Who may use it is decided twice: by the file's group, and by
/// the peer's uid (SO_PEERCRED) against the operators named here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Socket path; its directory must exist (systemd's RuntimeDirectory).
    pub socket: PathBuf,
    /// Group given the socket; its members (and users whose primary group it
    /// is) are operators. Unset: only root and the daemon's own user.
    pub group: Option<String>,
    /// Further uids allowed to operate, beyond root, the daemon's own user
    /// and the group's members.
    pub operator_uids: Vec<u32>,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            socket: PathBuf::from("var/run/arclockd.sock"),
            group: None,
            operator_uids: Vec::new(),
        }
    }
}

/// Request rate limits per client address (0 switches one off).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// The window both quotas are counted over (15 min).
    pub window_secs: u64,
    /// Requests per window on every `/api` route (100).
    pub general: u32,
    /// Requests per window on the auth routes, on top of the general quota (10).
    pub auth: u32,
    /// Requests per window on `/health` (1800: a probe every half second).
    pub health: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            window_secs: 15 * 60,
            general: 100,
            auth: 10,
            health: 1800,
        }
    }
}

/// Tokens: who issues them, for whom, and for how long.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// `iss` of access tokens.
    pub issuer: String,
    /// `aud` of access tokens (the mobile app).
    pub audience: String,
    /// Access token lifetime (15 min).
    pub access_ttl_secs: u64,
    /// Refresh token family lifetime (7 days).
    pub refresh_ttl_secs: u64,
    /// Failed face attempts per e-mail that lock it (attempts still running
    /// count: at most this many are ever evaluated in a window).
    pub max_failures: u32,
    /// Failed attempts per client address (IPv6: per /64), across accounts,
    /// that lock the address: much higher than per e-mail, because behind a
    /// NAT or a proxy many people share one; with the per-address rate limit
    /// it bounds guessing without one typo-prone office locking out all.
    pub max_failures_per_address: u32,
    /// Window in which those failures count.
    pub failure_window_secs: u64,
    /// How long a lockout lasts.
    pub lockout_secs: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            issuer: "arclock".into(),
            audience: "arclock-app".into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 7 * 24 * 3600,
            max_failures: 5,
            max_failures_per_address: 50,
            failure_window_secs: 15 * 60,
            lockout_secs: 15 * 60,
        }
    }
}

/// The public HTTPS listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub listen: SocketAddr,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    #[serde(default = "defaults::header_timeout_secs")]
    pub header_timeout_secs: u64,
    #[serde(default = "defaults::body_limit_bytes")]
    pub body_limit_bytes: usize,
    /// Seconds a client has to send a whole request body.
    #[serde(default = "defaults::body_timeout_secs")]
    pub body_timeout_secs: u64,
    /// Seconds a connection may stay silent (both ways) before it is closed.
    #[serde(default = "defaults::idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Seconds SIGTERM waits for in-flight requests before closing them.
    #[serde(default = "defaults::shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Locked memory all request bodies may hold while they arrive (half of
    /// it per client address); beyond it uploads get 503 at once. At least
    /// 3 x `body_limit_bytes`.
    #[serde(default = "defaults::body_budget_bytes")]
    pub body_budget_bytes: usize,
    /// Open connections one client address (IPv6: its /64) may hold; more
    /// are closed at accept (trusted proxies are exempt). 0: no cap.
    #[serde(default = "defaults::max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// A connection older than this is asked to close once its requests are
    /// done (HTTP/2 GOAWAY, HTTP/1.1 `Connection: close`); clients reconnect.
    /// Bounds what one connection can hold, and spreads clients after a
    /// balancer change. 0: no limit.
    #[serde(default = "defaults::max_connection_age_secs")]
    pub max_connection_age_secs: u64,
    /// How long the public `/health` answer is reused (ms; 0: checked on
    /// every call). Checks run one at a time, so a flood of probes costs at
    /// most one store and HSM check per interval.
    #[serde(default = "defaults::health_cache_ms")]
    pub health_cache_ms: u64,
    /// Reverse proxies (CIDRs) whose `Forwarded` / `X-Forwarded-For` name
    /// the client (`http::forwarded`); empty: the TCP peer is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections from `trusted_proxies` open with a PROXY protocol v2
    /// header naming the client (L4 balancers: HAProxy `send-proxy-v2`, an
    /// AWS NLB); a connection from them without one is closed.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// A request slower than this (ms) is logged with its per-step timeline
    /// (`crate::timing`), so that a stall names its step. 0: never.
    #[serde(default = "defaults::slow_request_ms")]
    pub slow_request_ms: u64,
    /// Send each API answer's per-step timeline as a `Server-Timing` header.
    /// Off by default: step durations tell a client more than it needs (for
    /// benchmarks and staging, not for the open internet).
    #[serde(default)]
    pub server_timing: bool,
}

/// How dev provisioning treats the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provision {
    /// `arclockd provision` may create the token and keys (embedded/dev).
    Dev,
    /// Production: the token must already exist; nothing is created.
    Attach,
}

/// The PKCS#11 token holding the key-encryption and signing keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hsm {
    pub module: PathBuf,
    pub token_label: String,
    /// The token's slot id, for a module whose token information cannot be
    /// read (opencryptoki 3.8's soft token); the label is still checked
    /// wherever it can be read.
    #[serde(default)]
    pub slot: Option<u64>,
    /// PIN file (0600). Exactly one of `pin_file` and `pin_credential`.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// systemd credential name (`LoadCredential=`) holding the PIN.
    #[serde(default)]
    pub pin_credential: Option<String>,
    /// SO PIN file written when dev provisioning creates the token.
    #[serde(default)]
    pub so_pin_file: Option<PathBuf>,
    pub provision: Provision,
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// Algorithm of access tokens and audit seals. The token keeps the
    /// other kind's keys published, so a switch keeps earlier tokens valid.
    #[serde(default)]
    pub jwt_algorithm: JwtAlgorithm,
    /// RSA size of new RS256 signing keys.
    #[serde(default = "defaults::jwt_key_bits")]
    pub jwt_key_bits: u32,
}

/// `hsm.jwt_algorithm`: what signs access tokens and audit seals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum JwtAlgorithm {
    /// RSA in the token (`jwt_key_bits`): the default, which every token has.
    #[default]
    RS256,
    /// ECDSA P-256 in the token: faster and smaller where the token has it.
    ES256,
}

impl Hsm {
    /// What the token is asked to sign with.
    pub fn signing(&self) -> arclock_hsm::Signing {
        match self.jwt_algorithm {
            JwtAlgorithm::RS256 => arclock_hsm::Signing::Rs256 {
                bits: self.jwt_key_bits,
            },
            JwtAlgorithm::ES256 => arclock_hsm::Signing::Es256,
        }
    }
}

/// Which storage backend holds users, templates and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Embedded,
    Mongodb,
}

/// Storage settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub backend: Backend,
    /// SQLite database file for the embedded backend.
    pub path: PathBuf,
    /// File (0600) holding the MongoDB connection string, which may contain a password.
    #[serde(default)]
    pub mongodb_uri_file: Option<PathBuf>,
    #[serde(default = "defaults::mongodb_database")]
    pub mongodb_database: String,
    /// Whether the embedded store answers a refresh rotation, and grants a
    /// sign-in's reservation, before its commit is fsynced (the default) or
    /// after.
    #[serde(default)]
    pub rotation_sync: crate::store::RotationSync,
}

/// The face models.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    pub runtime: PathBuf,
    pub manifest: PathBuf,
    pub dir: PathBuf,
    pub detector: String,
    pub recognizer: String,
    /// Photos processed at once (each with its own ONNX Runtime sessions).
    #[serde(default = "defaults::workers")]
    pub workers: usize,
    /// Threads each model run may use.
    #[serde(default = "defaults::intra_threads")]
    pub intra_threads: usize,
    /// Face selection and quality gates (defaults measured on LFW, see models/README.md).
    #[serde(default)]
    pub policy: arclock_face::Policy,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default = "defaults::log_format")]
    pub format: LogFormat,
    #[serde(default = "defaults::log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: defaults::log_format(),
            level: defaults::log_level(),
        }
    }
}

/// `text` for people, `json` for log shippers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

mod defaults {
    pub fn max_connections() -> usize {
        1024
    }
    pub fn header_timeout_secs() -> u64 {
        10
    }
    pub fn body_limit_bytes() -> usize {
        // A 10 MB photo as base64 plus the JSON around it.
        14 * 1024 * 1024
    }
    pub fn body_timeout_secs() -> u64 {
        30
    }
    pub fn shutdown_grace_secs() -> u64 {
        10
    }
    pub fn idle_timeout_secs() -> u64 {
        60
    }
    pub fn pool_size() -> usize {
        4
    }
    pub fn body_budget_bytes() -> usize {
        64 * 1024 * 1024
    }
    pub fn max_connections_per_address() -> usize {
        64
    }
    pub fn max_connection_age_secs() -> u64 {
        3600
    }
    pub fn slow_request_ms() -> u64 {
        1000
    }

    pub fn health_cache_ms() -> u64 {
        2000
    }
    pub fn jwt_key_bits() -> u32 {
        3072
    }
    pub fn mongodb_database() -> String {
        "arclock".into()
    }
    pub fn workers() -> usize {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
    pub fn intra_threads() -> usize {
        1
    }
    pub fn log_format() -> super::LogFormat {
        super::LogFormat::Text
    }
    pub fn log_level() -> String {
        "info".into()
    }
}

impl Config {
    /// Reads `path`, applies `ARCLOCK_*` overrides from `env`, and validates.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path, env)
    }

    /// As [`Config::load`], from text (tests and `--check-config`).
    pub fn from_toml(
        text: &str,
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let parse = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse(e.to_string()))?;
        let mut applied = Vec::new();
        for (var, value) in env {
            if let Some(key) = apply_override(&mut table, &var, &value)? {
                applied.push((var, key));
            }
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    let message = e.message().to_string();
                    // Blame the environment variable when the bad key came from one.
                    let unknown = message
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split('`').next());
                    match applied
                        .iter()
                        .find(|(_, key)| unknown == Some(key.as_str()))
                    {
                        Some((var, _)) => ConfigError::Env {
                            var: var.clone(),
                            message,
                        },
                        // A value in the file: the table lost its position,
                        // the text has it (line, key and the value shown).
                        None => match toml::from_str::<Config>(text) {
                            Err(located) => parse(located.to_string().trim_end().to_string()),
                            Ok(_) => parse(format!(
                                "{message} (after the ARCLOCK_* overrides: {})",
                                applied
                                    .iter()
                                    .map(|(var, _)| var.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )),
                        },
                    }
                })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.server.max_connections == 0 {
            return invalid("server.max_connections", "must be at least 1");
        }
        if self.server.header_timeout_secs == 0 || self.server.header_timeout_secs > 300 {
            return invalid("server.header_timeout_secs", "must be 1..=300");
        }
        if self.server.body_timeout_secs == 0 || self.server.body_timeout_secs > 600 {
            return invalid("server.body_timeout_secs", "must be 1..=600");
        }
        if self.server.idle_timeout_secs == 0 || self.server.idle_timeout_secs > 3600 {
            return invalid("server.idle_timeout_secs", "must be 1..=3600");
        }
        if self.server.body_budget_bytes < 3 * self.server.body_limit_bytes {
            return invalid(
                "server.body_budget_bytes",
                "must be at least 3 x server.body_limit_bytes (one address's half must hold a \
                 whole body with room to spare)",
            );
        }
        if self.server.proxy_protocol && self.server.trusted_proxies.is_empty() {
            return invalid(
                "server.proxy_protocol",
                "needs server.trusted_proxies (the balancers whose header is believed)",
            );
        }
        if self.server.health_cache_ms > 60_000 {
            return invalid("server.health_cache_ms", "must be 0..=60000");
        }
        if self.server.shutdown_grace_secs > 300 {
            return invalid("server.shutdown_grace_secs", "must be 0..=300");
        }
        if self.limits.window_secs == 0 || self.limits.window_secs > 24 * 3600 {
            return invalid("limits.window_secs", "must be 1..=86400");
        }
        if self.admin.socket.as_os_str().len() > 100 {
            return invalid(
                "admin.socket",
                "path too long for a Unix socket (at most 100 bytes)",
            );
        }
        if self.camera.burst == 0 || self.camera.burst > 30 {
            return invalid("camera.burst", "must be 1..=30");
        }
        if self.camera.warmup > 120 {
            return invalid("camera.warmup", "must be 0..=120");
        }
        if self.camera.width == 0 || self.camera.height == 0 {
            return invalid("camera.width", "width and height must be positive");
        }
        if self.registration.invite_ttl_secs < 60
            || self.registration.invite_ttl_secs > 90 * 24 * 3600
        {
            return invalid(
                "registration.invite_ttl_secs",
                "must be 60..=7776000 (90 days)",
            );
        }
        if self.liveness.challenge_ttl_secs < 10 || self.liveness.challenge_ttl_secs > 600 {
            return invalid("liveness.challenge_ttl_secs", "must be 10..=600");
        }
        let t = &self.liveness.thresholds;
        let unit = |v: f32| v.is_finite() && (0.0..=1.0).contains(&v);
        if !(unit(t.front_max_yaw)
            && unit(t.turn_min_yaw)
            && t.front_max_yaw < t.turn_min_yaw
            && t.min_parallax.is_finite()
            && unit(t.min_consistency)
            && unit(t.min_pad))
        {
            return invalid(
                "liveness.thresholds",
                "each within 0..=1, front_max_yaw below turn_min_yaw",
            );
        }
        if self.auth.max_failures == 0 {
            return invalid("auth.max_failures", "must be at least 1");
        }
        if self.auth.max_failures_per_address == 0 {
            return invalid("auth.max_failures_per_address", "must be at least 1");
        }
        if self.server.body_limit_bytes < 1024 || self.server.body_limit_bytes > 64 * 1024 * 1024 {
            return invalid("server.body_limit_bytes", "must be 1 KiB..=64 MiB");
        }
        if self.hsm.token_label.is_empty() || self.hsm.token_label.len() > 32 {
            return invalid(
                "hsm.token_label",
                "must be 1..=32 characters (PKCS#11 limit)",
            );
        }
        match (&self.hsm.pin_file, &self.hsm.pin_credential) {
            (Some(_), None) | (None, Some(_)) => {}
            _ => {
                return invalid(
                    "hsm.pin_file",
                    "set exactly one of hsm.pin_file and hsm.pin_credential",
                );
            }
        }
        if self.hsm.provision == Provision::Dev && self.hsm.pin_file.is_none() {
            return invalid(
                "hsm.provision",
                "\"dev\" needs hsm.pin_file to write the new PIN to",
            );
        }
        if self.hsm.pool_size == 0 || self.hsm.pool_size > 64 {
            return invalid("hsm.pool_size", "must be 1..=64");
        }
        if ![2048, 3072, 4096].contains(&self.hsm.jwt_key_bits) {
            return invalid("hsm.jwt_key_bits", "must be 2048, 3072 or 4096");
        }
        if self.store.backend == Backend::Mongodb && self.store.mongodb_uri_file.is_none() {
            return invalid(
                "store.mongodb_uri_file",
                "required when store.backend = \"mongodb\"",
            );
        }
        if self.models.intra_threads == 0 || self.models.intra_threads > 256 {
            return invalid("models.intra_threads", "must be 1..=256");
        }
        if self.models.workers == 0 || self.models.workers > 256 {
            return invalid("models.workers", "must be 1..=256");
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid(
                "log.level",
                "not a valid level or filter (e.g. \"info\", \"arclockd=debug\")",
            );
        }
        Ok(())
    }
}

/// The sections that differ between two configurations, other than what a
/// SIGHUP applies live (`log.level`; the certificate files are re-read, not
/// re-named).
pub fn restart_needed(running: &Config, fresh: &Config) -> Vec<&'static str> {
    let mut changed = sections_differing(running, fresh);
    if running.log.format != fresh.log.format {
        changed.push("log.format");
    }
    changed
}

/// Every section of [`Config`] but `[log]` (the one a SIGHUP applies in
/// part), named once: the section names `ARCLOCK_<SECTION>_<KEY>` accepts
/// and the comparison [`restart_needed`] makes both come from this list.
macro_rules! sections {
    ($($name:ident),* $(,)?) => {
        const SECTIONS: &[&str] = &["log", $(stringify!($name)),*];

        fn sections_differing(running: &Config, fresh: &Config) -> Vec<&'static str> {
            let mut changed = Vec::new();
            $(
                if running.$name != fresh.$name {
                    changed.push(stringify!($name));
                }
            )*
            changed
        }
    };
}

sections!(
    server,
    hsm,
    store,
    models,
    auth,
    limits,
    admin,
    camera,
    liveness,
    app,
    registration,
);

/// Applies one `ARCLOCK_SECTION_KEY=value` override to the raw table and
/// returns the key it set (`None` for variables that are not overrides).
fn apply_override(
    table: &mut toml::Table,
    var: &str,
    value: &str,
) -> Result<Option<String>, ConfigError> {
    let Some(rest) = var.strip_prefix("ARCLOCK_") else {
        return Ok(None);
    };
    if NOT_OVERRIDES.contains(&var) || var.starts_with("ARCLOCK_TEST_") {
        return Ok(None);
    }
    let err = |message: String| ConfigError::Env {
        var: var.to_string(),
        message,
    };
    let lower = rest.to_ascii_lowercase();
    let (section, key) = lower
        .split_once('_')
        .ok_or_else(|| err("expected ARCLOCK_<SECTION>_<KEY>".into()))?;
    if !SECTIONS.contains(&section) {
        return Err(err(format!("unknown section {section:?}")));
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| match v {
            toml::Value::Table(_) => false,
            // A list of scalars (`["10.0.0.0/8", "fd00::/8"]`), nothing deeper.
            toml::Value::Array(items) => items.iter().all(|i| !i.is_table() && !i.is_array()),
            _ => true,
        })
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    let section_table = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| err(format!("[{section}] is not a table")))?;
    section_table.insert(key.to_string(), parsed);
    Ok(Some(key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RotationSync;

    fn example() -> String {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/arclockd.toml"),
        )
        .unwrap()
    }

    /// The documented config has exactly the sections the override and
    /// reload code knows (they come from one list, `sections!`).
    #[test]
    fn the_section_list_is_the_documented_one() {
        let table: toml::Table = example().parse().unwrap();
        let mut documented: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut known = SECTIONS.to_vec();
        documented.sort_unstable();
        known.sort_unstable();
        assert_eq!(documented, known);
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml(
            text,
            Path::new("test.toml"),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn shipped_example_is_valid() {
        let c = load(&example(), &[]).unwrap();
        assert_eq!(c.server.listen.port(), 8443);
        assert_eq!(c.store.backend, Backend::Embedded);
        assert_eq!(c.store.rotation_sync, RotationSync::Deferred);
    }

    #[test]
    fn env_overrides_apply_and_unknown_ones_are_named() {
        let c = load(
            &example(),
            &[
                ("ARCLOCK_SERVER_LISTEN", "127.0.0.1:9443"),
                ("ARCLOCK_HSM_POOL_SIZE", "7"),
                ("ARCLOCK_FACES_DIR", "/x"),
                ("ARCLOCK_STORE_ROTATION_SYNC", "commit"),
            ],
        )
        .unwrap();
        assert_eq!(c.server.listen.port(), 9443);
        assert_eq!(c.hsm.pool_size, 7);
        assert_eq!(c.store.rotation_sync, RotationSync::Commit);
        let e = load(&example(), &[("ARCLOCK_SERVER_LISTN", "x")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listn"), "{e}");
        let e = load(&example(), &[("ARCLOCK_NOPE_X", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ARCLOCK_NOPE_X") && e.contains("unknown section"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = load(
            &example().replace("[server]", "[server]\nlisten_port = 1"),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("listen_port"), "{e}");
        let e = load(&example(), &[("ARCLOCK_HSM_JWT_KEY_BITS", "1024")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hsm.jwt_key_bits"), "{e}");
        let e = load(&example(), &[("ARCLOCK_SERVER_LISTEN", "not-an-address")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("listen") || e.contains("address"), "{e}");
        let e = load(&example(), &[("ARCLOCK_STORE_BACKEND", "postgres")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("postgres"), "{e}");
        let e = load(&example(), &[("ARCLOCK_HSM_PIN_CREDENTIAL", "pin")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
    }
}
