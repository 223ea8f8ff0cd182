//! Builds the running instance from a [`Config`]: checks everything that can be
//! checked before a socket opens, opens the store and object storage, binds the
//! listeners, and owns the shutdown signal and the named background tasks.

pub mod admin;
pub mod datadir;
mod lifecycle;
mod preflight;
mod recognizer;
pub use preflight::check;
pub mod secrets;
pub mod tasks;

pub use recognizer::{RecognizerNode, start_recognizer};
mod webhooks;

use crate::VERSION;
use crate::auth::manager::{self, Bootstrap};
use crate::auth::{Accounts, Policy};
use crate::config::Config;
use crate::config::{ConfigError, ConfigErrors, Secret};
use crate::objects::Objects;
use crate::store::Store;
use crate::tls::acme::{Acme, Http01Tokens};
use crate::tls::reload::Reloader;
use crate::tls::{CertResolver, TlsMetrics};
use crate::web::assets::{Assets, PageValues};
use crate::web::forwarded::TrustedProxies;
use crate::web::metrics::Metrics;
use crate::web::serve::{self, ConnLimits};
use crate::web::{self, WebState};
use axum::Router;
use preflight::Renewal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tasks::Tasks;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long in-flight requests may run on after shutdown begins; together with
/// the store closing this keeps exit well inside systemd's and CI's 5 s.
pub const GRACE: Duration = Duration::from_secs(3);

/// Snapshots waiting for face analysis; more are stored but not analysed.
const SNAPSHOT_QUEUE: usize = 64;

/// How often the local CA's server certificate is checked for renewal.
const LOCAL_CA_CHECK: Duration = Duration::from_secs(60 * 60);

/// Why the instance could not start. Every variant is the operator's to fix,
/// so the command line exits with 2 for all of them.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Preflight(ConfigErrors),
    #[error("cannot open the database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("cannot open object storage: {0}")]
    Objects(#[from] crate::objects::ObjectsError),
    #[error("cannot create the manager account: {0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot keep an instance secret: {0}")]
    Secrets(String),
    #[error("TURN_PORT: {0}")]
    Turn(#[from] crate::turn::TurnError),
    #[error("cannot back up before upgrading the database: {0}")]
    UpgradeBackup(#[from] crate::backup::BackupError),
    #[error("cannot start recognition: {0}")]
    Recognize(#[from] crate::recognize::RecognizeError),
    #[error("RECOGNIZER_URI: {0}")]
    Recognizers(#[from] crate::recognize::RemoteError),
    #[error("cannot stop overdue sessions: {0}")]
    Proctoring(#[from] crate::proctoring::ProctoringError),
}

/// A started instance.
pub struct Running {
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub tls_mode: &'static str,
    /// Present on the first start when the manager password was generated.
    pub generated_manager_password: Option<Secret>,
    pub store: Arc<dyn Store>,
    pub objects: Objects,
    /// The embedded TURN relay; `None` when `TURN_URI` names an external one.
    pub turn: Option<crate::turn::server::TurnServer>,
    /// Mints per-participant TURN credentials for browsers.
    pub ice: crate::turn::credentials::Minter,
    /// The live hub (its load is visible to diagnostics and tests).
    pub hub: Arc<crate::realtime::Hub>,
    /// The `RECOGNIZER_URI` hosts and their health, when configured.
    pub recognizers: Option<Arc<crate::recognize::Remote>>,
    tasks: Tasks,
    reload: Arc<Notify>,
    _lock: datadir::DataDirLock,
}

/// Starts the instance. `extra` routes are merged into the router (tests and
/// later modules add theirs this way).
pub async fn start(config: Config, extra: Router<Arc<WebState>>) -> Result<Running, AppError> {
    let checked = preflight::run(&config).map_err(AppError::Preflight)?;
    let session_key = secrets::session_key(&config).map_err(AppError::Secrets)?;
    // Bind before opening the store so that a port in use is reported as a
    // configuration error and nothing is half-started.
    let (https, http) = bind(&config).await.map_err(AppError::Preflight)?;
    let turn_secret = secrets::turn_secret(&config).map_err(AppError::Secrets)?;
    let evidence_key = secrets::evidence_key(&config.data_dir).map_err(AppError::Secrets)?;
    let turn = match config.turn_uri {
        Some(_) => None,
        None => Some(
            crate::turn::server::TurnServer::bind(crate::turn::Settings::from_config(
                &config,
                turn_secret.clone(),
            ))
            .await?,
        ),
    };
    let mut config = config;
    if config.port == 0
        && let (Ok(addr), Some(default)) =
            (https.local_addr(), config.manager_host.strip_suffix(":0"))
    {
        // PORT=0 picks a free port; the default MANAGER_HOST follows it.
        config.manager_host = format!("{default}:{}", addr.port());
    }

    let db_path = config.data_dir.join(crate::store::DATABASE_FILE);
    if let Some(dir) =
        crate::backup::before_upgrade(&db_path, &config.data_dir, crate::store::MIGRATIONS).await?
    {
        tracing::info!(
            "backed up the database before upgrading it, into {}",
            dir.display()
        );
    }
    let store = crate::store::open(&db_path, crate::store::MIGRATIONS)?;
    let objects = crate::objects::open(&config)?;
    crate::auth::hosts::ensure_default(store.as_ref(), &config.manager_host)?;
    // The configuration in force is part of the record (no secrets: only
    // whether they are set).
    crate::auth::audit::record(
        store.as_ref(),
        crate::auth::audit::INSTANCE,
        crate::auth::audit::Event::new("invigil", "started", VERSION)
            .with("tls", checked.tls_mode)
            .with("manager_host", &config.manager_host)
            .with(
                "objects",
                if config.minio_uri.is_some() {
                    "s3"
                } else {
                    "local"
                },
            )
            .with(
                "cold",
                match &config.cold {
                    None => "none",
                    Some(crate::config::ColdTier::Dir(_)) => "directory",
                    Some(crate::config::ColdTier::Uri(_)) => "s3",
                },
            )
            .with(
                "session_key",
                if config.session_key.is_some() {
                    "SESSION_KEY"
                } else {
                    "generated"
                },
            )
            .with("password_rule", config.password_rule.source()),
    )?;
    let generated = match manager::ensure(
        store.as_ref(),
        &config.manager_username,
        config.manager_password.as_ref(),
        &config.password_rule,
    )? {
        Bootstrap::Existing(_) => None,
        Bootstrap::Created { generated, .. } => generated,
    };

    let tls_metrics = TlsMetrics::new();
    if let Some(info) = checked.resolver.as_ref().and_then(|r| r.current_info()) {
        tls_metrics.set_expiry(info.not_after);
    }
    let mut tasks = Tasks::new();
    let hub = Arc::new(crate::realtime::Hub::new(
        store.clone(),
        crate::realtime::Limits::default(),
        tasks.shutdown_signal(),
    ));
    let https_port = https.local_addr().map_err(bind_error("PORT"))?.port();
    let ice = crate::turn::credentials::Minter::new(
        turn_secret,
        match (&config.turn_uri, &turn) {
            (Some(uri), _) => crate::turn::credentials::Target::External {
                urls: crate::turn::credentials::external_urls(uri),
            },
            (None, t) => crate::turn::credentials::Target::Embedded {
                host: config.domain_name.clone().unwrap_or_else(|| {
                    config
                        .turn_external_ip
                        .map_or(config.host, |(public, _)| public)
                        .to_string()
                }),
                external_ip: config.turn_external_ip.map(|(public, _)| public),
                turn_port: t
                    .as_ref()
                    .map_or(config.turn_port, |t| t.local_addr().port()),
                // Behind a reverse proxy the port is plain HTTP and carries no TURN.
                https_port: checked.resolver.is_some().then_some(https_port),
            },
        },
    );
    let service = Arc::new(crate::recognize::Service::new(
        config.recognizer_backend,
        config.ort_library.as_deref(),
        config.threads,
        config.recognizer_queue,
    )?);
    let recognizers = config
        .recognizer_uri
        .as_ref()
        .map(crate::recognize::Remote::new)
        .transpose()?
        .map(Arc::new);
    let recognition = web::recognize::Endpoint {
        service: service.clone(),
        api_key: config.api_key.clone(),
        remote: recognizers.clone(),
        upload_limit_bytes: config.upload_limit_bytes,
    };
    let (snapshot_queue, snapshot_jobs) = crate::proctoring::snapshots::queue(SNAPSHOT_QUEUE);
    let snapshot_stats = snapshot_queue.stats();
    let uploads = Arc::new(crate::proctoring::uploads::Uploads::new(
        store.clone(),
        objects.clone(),
        crate::proctoring::uploads::Settings {
            max_chunk: config.upload_limit_bytes,
            expires: config.upload_expires,
        },
        Some(snapshot_queue),
    ));
    let faces = Arc::new(crate::proctoring::identity::FaceIndex::default());
    let state = Arc::new(WebState {
        version: VERSION,
        tls_mode: checked.tls_mode,
        certificate: checked.resolver.clone(),
        metrics: Metrics::with(VERSION, checked.tls_mode, |r| {
            tls_metrics.register(r);
            if let Some(turn) = &turn {
                r.register_collector(Box::new(turn.metrics()));
            }
        }),
        assets: Assets::new(
            config.static_dir.clone(),
            config.static_expires,
            PageValues {
                version: VERSION.to_string(),
                manager_host: config.manager_host.clone(),
                manager_username: config.manager_username.clone(),
            },
        ),
        upload_limit_bytes: config.upload_limit_bytes,
        accounts: Arc::new(Accounts::new(
            store.clone(),
            Policy::from_config(&config),
            session_key,
        )),
        hub: hub.clone(),
        ice: ice.clone(),
        objects: objects.clone(),
        evidence: Arc::new(crate::proctoring::bundle::Signer {
            key: evidence_key,
            instance: crate::proctoring::bundle::Instance::new(&config.manager_host),
        }),
        recognition,
        uploads: uploads.clone(),
        instance: web::api::instance::InstanceFacts {
            started: std::time::SystemTime::now(),
            data_dir: config.data_dir.clone(),
            objects: objects.describe(),
            turn: turn.clone(),
            turn_external: match &config.turn_uri {
                Some(uri) => crate::turn::credentials::external_urls(uri),
                None => Vec::new(),
            },
            recognizers: recognizers.clone(),
            recognition_threads: config.threads,
            recognition_queue: config.recognizer_queue,
            snapshots: snapshot_stats.clone(),
        },
        faces: faces.clone(),
    });
    let router = web::router(state, extra);
    let limits = ConnLimits {
        timeout: config.http_timeout,
        grace: GRACE,
    };
    let https_addr = https.local_addr().map_err(bind_error("PORT"))?;
    let http_addr = http
        .as_ref()
        .map(|l| l.local_addr().map_err(bind_error("HTTP_PORT")))
        .transpose()?;

    let proxies = Arc::new(TrustedProxies(config.trusted_proxies.clone()));
    let signal = tasks.shutdown_signal();
    if let Some(turn) = &turn {
        let signal = tasks.shutdown_signal();
        tasks.spawn("turn-udp", turn.clone().serve_udp(signal.requested()));
        let signal = tasks.shutdown_signal();
        tasks.spawn("turn-tcp", turn.clone().serve_tcp(signal.requested()));
        let signal = tasks.shutdown_signal();
        tasks.spawn("turn-sweep", turn.clone().sweep(signal.requested()));
    }
    match &checked.resolver {
        Some(resolver) => {
            let acceptor =
                tokio_rustls::TlsAcceptor::from(crate::tls::server_config(resolver.clone()));
            tasks.spawn(
                "https",
                serve::serve_https(
                    https,
                    acceptor,
                    router,
                    limits,
                    proxies,
                    turn.clone(),
                    signal.requested(),
                ),
            );
        }
        None => tasks.spawn(
            "http-behind-proxy",
            serve::serve_plain(https, router, limits, proxies, signal.requested()),
        ),
    }
    let challenges = Arc::new(Http01Tokens::new());
    if let Some(http) = http {
        let signal = tasks.shutdown_signal();
        tasks.spawn(
            "http-redirect",
            serve::serve_redirect(
                http,
                https_addr.port(),
                limits,
                challenges.clone(),
                signal.requested(),
            ),
        );
    }
    let reload = Arc::new(Notify::new());
    if let Some(resolver) = &checked.resolver {
        certificate_tasks(
            &mut tasks,
            &config,
            checked.renewal,
            resolver.clone(),
            challenges,
            tls_metrics,
            reload.clone(),
        );
    }
    // Deadlines that passed while the daemon was down are honoured before
    // anything else is served.
    let overdue = crate::proctoring::sessions::stop_due(store.as_ref(), crate::auth::now_secs())?;
    if !overdue.is_empty() {
        tracing::info!(
            count = overdue.len(),
            "stopped sessions whose end passed while invigil was down"
        );
    }
    let signal = tasks.shutdown_signal();
    tasks.spawn(
        "session-timer",
        session_timer(store.clone(), hub.clone(), signal),
    );
    let sweep_store = store.clone();
    let signal = tasks.shutdown_signal();
    tasks.spawn("session-sweeper", sweep_sessions(sweep_store, signal));
    let signal = tasks.shutdown_signal();
    tasks.spawn("hub-heartbeats", hub.clone().run_heartbeats(signal));
    // Without the socket only online backups and doctor's status are lost,
    // which is no reason to refuse to serve exams (e.g. a DATA_DIR path too
    // long for a socket name).
    match admin::bind(&config.data_dir) {
        Ok(listener) => {
            let signal = tasks.shutdown_signal();
            tasks.spawn(
                "admin-socket",
                admin::serve(
                    listener,
                    store.clone(),
                    config.data_dir.clone(),
                    signal.requested(),
                ),
            );
        }
        Err(e) => tracing::warn!(
            "cannot open {}: {e}; invigil backup works only while invigil is stopped",
            config.data_dir.join(admin::SOCKET).display()
        ),
    }
    let signal = tasks.shutdown_signal();
    tasks.spawn(
        "webhook-delivery",
        webhooks::run(store.clone(), config.webhook_retry_after, signal),
    );
    let signal = tasks.shutdown_signal();
    tasks.spawn("upload-expiry", expire_uploads(uploads, signal));
    let signal = tasks.shutdown_signal();
    tasks.spawn(
        "snapshot-analysis",
        crate::proctoring::snapshots::run(
            snapshot_jobs,
            Arc::new(crate::proctoring::snapshots::FaceCounter::new(
                service,
                recognizers.clone(),
                tokio::runtime::Handle::current(),
            )),
            store.clone(),
            snapshot_stats,
            signal.requested(),
        ),
    );
    let signal = tasks.shutdown_signal();
    tasks.spawn(
        "retention",
        lifecycle::retention(store.clone(), objects.clone(), faces, signal),
    );
    if objects.cold().is_some() {
        let signal = tasks.shutdown_signal();
        tasks.spawn(
            "tier-mover",
            lifecycle::tier_mover(
                store.clone(),
                objects.clone(),
                crate::proctoring::tiering::Settings {
                    after: config.cold_after,
                    bytes_per_sec: config.cold_rate,
                },
                signal,
            ),
        );
    }
    if let Some(remote) = &recognizers {
        let signal = tasks.shutdown_signal();
        tasks.spawn(
            "recognizer-health",
            remote
                .clone()
                .run_checks(crate::recognize::CHECK_EVERY, signal.requested()),
        );
    }
    tracing::info!(%https_addr, ?http_addr, tls = checked.tls_mode, "invigil {VERSION} ready");
    Ok(Running {
        https_addr,
        http_addr,
        tls_mode: checked.tls_mode,
        generated_manager_password: generated,
        store,
        objects,
        turn,
        ice,
        hub,
        recognizers,
        tasks,
        reload,
        _lock: checked.lock,
    })
}

/// Starts what keeps the certificate current: the file watcher, the ACME
/// client or the local CA's renewal.
fn certificate_tasks(
    tasks: &mut Tasks,
    config: &Config,
    renewal: Renewal,
    resolver: Arc<CertResolver>,
    challenges: Arc<Http01Tokens>,
    metrics: TlsMetrics,
    reload: Arc<Notify>,
) {
    let signal = tasks.shutdown_signal();
    match renewal {
        Renewal::None => {}
        Renewal::Files(own) => {
            let reloader = Arc::new(Reloader::new(own, resolver, metrics));
            tasks.spawn(
                "certificate-files",
                reloader.run(config.ssl_reload, reload, signal.requested()),
            );
        }
        Renewal::Acme(settings) => {
            let acme = Arc::new(Acme::new(settings, resolver, challenges, metrics));
            tasks.spawn("acme", acme.run(signal.requested()));
        }
        Renewal::LocalCa(names) => tasks.spawn(
            "local-ca",
            crate::tls::local_ca::run_renewal(
                config.data_dir.clone(),
                names,
                resolver,
                metrics,
                LOCAL_CA_CHECK,
                signal.requested(),
            ),
        ),
    }
}

impl Running {
    /// After READY has been sent: pings systemd's watchdog from now on when
    /// the unit asks for it (a ping before READY would confuse systemd).
    pub fn start_watchdog(&mut self) {
        if let Some(interval) = watchdog_interval() {
            let signal = self.tasks.shutdown_signal();
            self.tasks.spawn("watchdog", watchdog(interval, signal));
        }
    }

    /// Re-reads `SSL_CERT`/`SSL_KEY`/`SSL_CA` now (SIGHUP); a certificate
    /// that does not load is refused and the current one stays.
    pub fn reload_certificates(&self) {
        self.reload.notify_one();
    }

    /// Stops accepting, lets in-flight requests finish within [`GRACE`], stops
    /// every task, then closes the store and releases the data directory.
    pub async fn stop(self) {
        let stuck = self.tasks.stop(GRACE + Duration::from_millis(500)).await;
        if !stuck.is_empty() {
            tracing::warn!(?stuck, "tasks aborted at shutdown");
        }
        drop(self.store);
        tracing::info!("stopped");
    }
}

/// Stops sessions when their deadline or duration limit is reached. The
/// timer index lives in the store, so it survives restarts; this task only
/// wakes up when the next end time comes (or every few seconds, to pick up
/// sessions started since).
async fn session_timer(
    store: Arc<dyn Store>,
    hub: Arc<crate::realtime::Hub>,
    signal: tasks::Shutdown,
) {
    use crate::proctoring::sessions;
    let stop = signal.requested();
    tokio::pin!(stop);
    loop {
        let now = crate::auth::now_secs();
        let s = store.clone();
        let next = tokio::task::spawn_blocking(move || {
            let stopped = sessions::stop_due(s.as_ref(), now)?;
            Ok::<_, crate::proctoring::ProctoringError>((stopped, sessions::next_due(s.as_ref())?))
        })
        .await;
        let wait = match next {
            Ok(Ok((stopped, next))) => {
                if !stopped.is_empty() {
                    tracing::info!(count = stopped.len(), "sessions stopped at their deadline");
                }
                for s in &stopped {
                    hub.announce_status(s, sessions::Action::Stop, "invigil");
                }
                next.map_or(5, |at| at.saturating_sub(now).clamp(1, 5))
            }
            Ok(Err(e)) => {
                tracing::warn!("session timer: {e}");
                5
            }
            Err(_) => 5,
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(wait)) => {}
            () = &mut stop => return,
        }
    }
}

/// Half of systemd's `WATCHDOG_USEC` when the unit has `WatchdogSec`.
fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        Some(Duration::from_micros(usec / 2))
    } else {
        None
    }
}

/// Pings systemd's watchdog while the runtime is alive: a wedged runtime
/// stops the pings and systemd restarts the service.
async fn watchdog(interval: Duration, signal: tasks::Shutdown) {
    let stop = signal.requested();
    tokio::pin!(stop);
    let mut every = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = every.tick() => {
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
            () = &mut stop => return,
        }
    }
}

/// Removes incomplete uploads whose `UPLOAD_EXPIRES` ran out, once a minute
/// (and at start, for those that ran out while invigil was down).
async fn expire_uploads(
    uploads: Arc<crate::proctoring::uploads::Uploads>,
    signal: tasks::Shutdown,
) {
    let stop = signal.requested();
    tokio::pin!(stop);
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = every.tick() => match uploads.expire(crate::auth::now_secs()).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "incomplete uploads removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!("removing expired uploads failed: {e}"),
            },
            () = &mut stop => return,
        }
    }
}

/// Removes expired sign-in sessions now and then, so the table does not grow
/// with every visit that never signed out.
async fn sweep_sessions(store: Arc<dyn Store>, signal: tasks::Shutdown) {
    let stop = signal.requested();
    tokio::pin!(stop);
    let mut every = tokio::time::interval(Duration::from_secs(600));
    loop {
        tokio::select! {
            _ = every.tick() => {
                let store = store.clone();
                let swept = tokio::task::spawn_blocking(move || {
                    crate::auth::sessions::sweep(store.as_ref(), crate::auth::now_secs())
                })
                .await;
                match swept {
                    Ok(Ok(n)) if n > 0 => tracing::debug!(expired = n, "sign-in sessions swept"),
                    Ok(Err(e)) => tracing::warn!("sweeping sign-in sessions failed: {e}"),
                    _ => {}
                }
            }
            () = &mut stop => return,
        }
    }
}

fn bind_error(var: &'static str) -> impl Fn(std::io::Error) -> AppError {
    move |e| {
        AppError::Preflight(ConfigErrors(vec![ConfigError {
            var: var.into(),
            message: e.to_string(),
        }]))
    }
}

/// Binds the HTTPS and HTTP ports, reporting both failures together.
async fn bind(config: &Config) -> Result<(TcpListener, Option<TcpListener>), ConfigErrors> {
    let mut errors = Vec::new();
    let https_at = SocketAddr::new(config.host, config.port);
    let https = TcpListener::bind(https_at)
        .await
        .map_err(|e| errors.push(port_error("PORT", https_at, &e)))
        .ok();
    let mut http = None;
    // Behind a reverse proxy the proxy owns the public ports.
    if let Some(port) = config.http_port.filter(|_| !config.reverse_proxy) {
        let at = SocketAddr::new(config.host, port);
        match TcpListener::bind(at).await {
            Ok(l) => http = Some(l),
            Err(e) => errors.push(port_error("HTTP_PORT", at, &e)),
        }
    }
    match https {
        Some(https) if errors.is_empty() => Ok((https, http)),
        _ => Err(ConfigErrors(errors)),
    }
}

fn port_error(var: &str, at: SocketAddr, e: &std::io::Error) -> ConfigError {
    let why = match e.kind() {
        std::io::ErrorKind::AddrInUse => "is already in use by another program".to_string(),
        std::io::ErrorKind::PermissionDenied => {
            "needs privileges (ports below 1024 need root or CAP_NET_BIND_SERVICE)".to_string()
        }
        _ => format!("cannot be opened: {e}"),
    };
    ConfigError {
        var: var.into(),
        message: format!("{at} {why}"),
    }
}
