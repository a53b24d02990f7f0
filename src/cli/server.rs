//! The service's side of the CLI: serve, check the configuration, print policies, the admin
//! API's commands.

use std::path::PathBuf;
use std::process::ExitCode;

use stsvend::config;
use stsvend::startup::Application;

use super::fail;

#[derive(clap::Subcommand)]
pub enum ServerCommand {
    /// Run the service.
    Serve {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
    },
    /// Load and validate the configuration, print the effective settings (secrets redacted).
    CheckConfig {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
    },
    /// Print exactly what goes to STS for a user with these groups (inline policy, managed
    /// policy ARNs, session tags) and the sizes against AWS's limits, as JSON.
    Policy {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
        /// The user id (as the IdP's user-id claim gives it).
        #[arg(long)]
        user: String,
        /// A group the user belongs to; repeat for several.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Narrow to `s3://bucket/prefix` as `?target=` does; repeat for several.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// The archive (`[archive]` or an `[[archives]]` name); default: the one that owns
        /// the targets' buckets, else the deployment's default archive.
        #[arg(long)]
        archive: Option<String>,
    },
    /// Revoke a user on every replica (fleet mode) within a second: their cookies and tokens
    /// get 403, their cached credentials are dropped. Prints the IAM deny statement that also
    /// kills the credentials they already hold.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        /// The user id (as the IdP's user-id claim gives it).
        #[arg(long)]
        user: String,
        #[arg(long)]
        reason: Option<String>,
        /// Lift the revocation by itself after this many seconds.
        #[arg(long)]
        expires_in: Option<u64>,
    },
    /// Print the IAM deny statement that ends a user's sessions issued before a time (what
    /// `revoke` prints), e.g. for a user revoked earlier.
    DenyStatement {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
        #[arg(long)]
        user: String,
        /// When the user was revoked (RFC 3339; default now). The statement denies their
        /// sessions issued before the revocation took effect everywhere: this time rounded up
        /// to the second, plus sts.timeout_seconds and 5 s (README "Revoking a user").
        #[arg(long, alias = "issued-before")]
        revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Lift a user's revocation.
    Unrevoke {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        user: String,
    },
    /// List the revocations in force.
    Revocations {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print the customer-managed policies `policy.mode = "managed"` expects (one or more per
    /// group, and one for the buckets open to everyone), as JSON: name, path, ARN, document.
    ManagedPolicies {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
        /// The archive whose policies (in its role's account); default: the default archive.
        #[arg(long)]
        archive: Option<String>,
    },
    /// Print the role policy documents `policy.mode = "tags"` needs (attach each to the role
    /// as a customer-managed policy), as a JSON array.
    RolePolicy {
        /// Configuration file layered over the built-in defaults.
        #[arg(long, env = config::CONFIG_PATH_ENV)]
        config: Option<PathBuf>,
        /// The archive whose role; default: the default archive.
        #[arg(long)]
        archive: Option<String>,
    },
}

/// Where the admin API is: given outright, or found from the configuration (its internal
/// listener and admin token).
#[derive(clap::Args)]
pub struct AdminArgs {
    /// Configuration file to find the admin endpoint and token in.
    #[arg(long, env = config::CONFIG_PATH_ENV)]
    config: Option<PathBuf>,
    /// The internal listener's URL, e.g. http://127.0.0.1:9090
    #[arg(long)]
    admin_url: Option<url::Url>,
    /// File holding the admin token.
    #[arg(long)]
    admin_token_file: Option<PathBuf>,
}

pub fn run(command: ServerCommand) -> ExitCode {
    match command {
        ServerCommand::CheckConfig { config } => match config::load(config.as_deref()) {
            Ok((raw, settings)) => match stsvend::startup::preflight(&settings) {
                Ok(notes) => {
                    print!("{}", config::render_redacted(&raw));
                    for (i, a) in settings.archives.iter().enumerate() {
                        let in_region = a
                            .buckets
                            .iter()
                            .filter(|b| b.region == a.sts.region)
                            .count();
                        eprintln!(
                            "stsvend: archive {:?}{}: role {}{}, region {}, {} buckets ({in_region} in region), policy {}, endpoint {}/s3credentials",
                            a.name,
                            if i == settings.default_archive { " (default)" } else { "" },
                            a.sts.role_arn,
                            if a.sts.external_id.is_some() { " with an external id" } else { "" },
                            a.sts.region,
                            a.buckets.len(),
                            a.policy.mode.as_str(),
                            a.path,
                        );
                    }
                    let t = &settings.tickets;
                    if t.enabled {
                        eprintln!(
                            "stsvend: tickets: on, kept in {}, {} s by default, at most {} s, {} per user",
                            t.file.display(),
                            t.default_lifetime.as_secs(),
                            t.max_lifetime.as_secs(),
                            t.max_per_user
                        );
                    } else {
                        eprintln!("stsvend: tickets: off");
                    }
                    for p in &settings.platforms {
                        eprintln!(
                            "stsvend: platform {:?}: tokens issued to client {:?} act for their users (sessions <user>@{}+{})",
                            p.name, p.client_id, settings.server.app_name, p.name
                        );
                    }
                    for note in notes {
                        eprintln!("stsvend: {note}");
                    }
                    eprintln!("stsvend: configuration is valid");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        },
        ServerCommand::Revoke {
            admin,
            user,
            reason,
            expires_in,
        } => admin_call(
            &admin,
            reqwest::Method::POST,
            "",
            Some(
                serde_json::json!({"user": user, "reason": reason, "expires_in_seconds": expires_in}),
            ),
        ),
        ServerCommand::Unrevoke { admin, user } => {
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("user", &user)
                .finish();
            admin_call(&admin, reqwest::Method::DELETE, &format!("?{query}"), None)
        }
        ServerCommand::DenyStatement {
            config,
            user,
            revoked_at,
        } => match config::load(config.as_deref()) {
            Ok((_, settings)) => print_json(&stsvend::revoke::deny_statement(
                &settings,
                &user,
                revoked_at.unwrap_or_else(chrono::Utc::now),
            )),
            Err(e) => fail(e),
        },
        ServerCommand::Revocations { admin } => admin_call(&admin, reqwest::Method::GET, "", None),
        ServerCommand::ManagedPolicies { config, archive } => match config::load(config.as_deref())
            .and_then(|(_, s)| archive_view(&s, archive.as_deref(), &[]))
        {
            Ok(settings) => match stsvend::vend::scope::managed_policies(&settings) {
                Ok(policies) => print_json(&policies),
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        },
        ServerCommand::RolePolicy { config, archive } => match config::load(config.as_deref())
            .and_then(|(_, s)| archive_view(&s, archive.as_deref(), &[]))
        {
            Ok(settings) => match stsvend::vend::scope::role_policy(&settings) {
                Ok(docs) => {
                    let docs: Vec<serde_json::Value> = docs
                        .iter()
                        .filter_map(|d| serde_json::from_str(d).ok())
                        .collect();
                    print_json(&docs)
                }
                Err(e) => fail(e),
            },
            Err(e) => fail(e),
        },
        ServerCommand::Policy {
            config,
            user,
            groups,
            targets,
            archive,
        } => match config::load(config.as_deref())
            .and_then(|(_, settings)| stsvend::startup::preflight(&settings).map(|_| settings))
            .and_then(|s| archive_view(&s, archive.as_deref(), &targets))
        {
            Ok(settings) => print_policy(&settings, &user, &groups, &targets),
            Err(e) => fail(e),
        },
        ServerCommand::Serve { config } => {
            let settings = match config::load(config.as_deref()) {
                Ok((_, settings)) => settings,
                Err(e) => return fail(e),
            };
            let _log_guard = stsvend::telemetry::init(
                settings.server.log_format,
                settings.server.log_queue_max_bytes,
            );
            let runtime = actix_web::rt::System::new();
            match runtime.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let public_url = settings.server.public_url.clone();
    // Handlers first, then the socket: once the port answers, SIGTERM means a graceful stop
    // (the default action would kill the process).
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let app = Application::build(settings).await?;
    let handles = app.stop_handles();
    actix_web::rt::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stopping: requests in flight may finish");
        futures_util::future::join_all(handles.iter().map(|h| h.stop(true))).await;
    });
    tracing::info!(port = app.port(), %public_url, "stsvend listening");
    app.run_until_stopped().await?;
    tracing::info!("stsvend stopped");
    Ok(())
}

/// One call to the admin API; prints what it answered.
fn admin_call(
    args: &AdminArgs,
    method: reqwest::Method,
    suffix: &str,
    body: Option<serde_json::Value>,
) -> ExitCode {
    use secrecy::ExposeSecret;
    let settings = match (&args.admin_url, &args.admin_token_file) {
        (Some(_), Some(_)) => None,
        _ => match config::load(args.config.as_deref()) {
            Ok((_, s)) => Some(s),
            Err(e) => return fail(e),
        },
    };
    let base = match (&args.admin_url, &settings) {
        (Some(u), _) => u.as_str().trim_end_matches('/').to_owned(),
        (None, Some(s)) => match s.server.internal_bind {
            Some(addr) => {
                let host = if addr.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    addr.ip()
                };
                format!("http://{}", std::net::SocketAddr::new(host, addr.port()))
            }
            None => return fail("the configuration has no server.internal_bind: give --admin-url"),
        },
        (None, None) => return fail("give --admin-url or --config"),
    };
    let token = match (&args.admin_token_file, &settings) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => return fail(format!("cannot read {}: {e}", path.display())),
        },
        (None, Some(s)) => match &s.admin_token {
            Some(t) => t.expose_secret().to_owned(),
            None => return fail("the configuration has no [admin] token: give --admin-token-file"),
        },
        (None, None) => return fail("give --admin-token-file or --config"),
    };
    let url = format!("{base}/admin/revocations{suffix}");
    let run = async {
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(token)
            .timeout(std::time::Duration::from_secs(10));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let res = request.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        Ok::<_, String>((status, text))
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match runtime.block_on(run) {
        Ok((status, text)) if status.is_success() => {
            match serde_json::from_str::<serde_json::Value>(&text) {
                Ok(v) => {
                    if let Some(statement) = v.get("deny_statement") {
                        eprintln!(
                            "stsvend: revoked ({}). Credentials already handed out stay valid at AWS until they expire; to end them now, add this statement to the read-only role's policy (remove it once they have expired):",
                            v["applies_to"].as_str().unwrap_or("")
                        );
                        println!(
                            "{}",
                            serde_json::to_string_pretty(statement).unwrap_or_default()
                        );
                        return ExitCode::SUCCESS;
                    }
                    print_json(&v)
                }
                Err(_) => {
                    eprintln!("stsvend: done ({status})");
                    ExitCode::SUCCESS
                }
            }
        }
        Ok((status, text)) => fail(format!(
            "{status}: {}",
            stsvend::error::printable(&text, 300)
        )),
        Err(e) => fail(e),
    }
}

/// The deployment as one archive sees it: the one named, else the one owning the targets'
/// buckets (as the service routes them), else the default.
fn archive_view(
    settings: &config::Settings,
    name: Option<&str>,
    targets: &[String],
) -> Result<config::Settings, config::ConfigError> {
    let index = match name {
        Some(name) => settings
            .archives
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| {
                config::ConfigError::key(
                    "archive",
                    format!(
                        "{name:?} is not an archive; expected one of: {}",
                        settings
                            .archives
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })?,
        None => targets
            .iter()
            .filter_map(|t| stsvend::vend::narrow::Target::parse(t).ok())
            .find_map(|t| {
                settings
                    .archives
                    .iter()
                    .position(|a| a.buckets.iter().any(|b| b.name == t.bucket))
            })
            .unwrap_or(settings.default_archive),
    };
    let mut view = settings.for_archive(index);
    // The chosen archive first: what prints the view names it.
    view.archives.swap(0, index);
    Ok(view)
}

fn print_json(value: &impl serde::Serialize) -> ExitCode {
    match serde_json::to_string_pretty(value) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn print_policy(
    settings: &config::Settings,
    user: &str,
    groups: &[String],
    targets: &[String],
) -> ExitCode {
    use stsvend::vend::{narrow, scope, session_name};
    let groups: Vec<String> = {
        let mut g = groups.to_vec();
        g.sort();
        g.dedup();
        g
    };
    let scoper = match scope::Scoper::new(settings) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let scope = if targets.is_empty() {
        scoper.compute(settings, &groups).map_err(|e| e.to_string())
    } else {
        let parsed: Result<Vec<narrow::Target>, String> =
            targets.iter().map(|t| narrow::Target::parse(t)).collect();
        parsed.and_then(
            |t| match scoper.narrowed(settings, &groups, &narrow::canonical(t)) {
                Ok(s) => Ok(Some((*s).clone())),
                Err(scope::Narrowing::NoBucket) => Ok(None),
                Err(scope::Narrowing::NotCovered(what)) => Err(format!(
                    "the groups do not grant all of the targets: {}",
                    what.join("; ")
                )),
                Err(scope::Narrowing::TooLarge(n)) => Err(format!(
                    "the targets need a {n}-character session policy, over {}",
                    scope::MAX_INLINE_CHARS
                )),
            },
        )
    };
    match scope {
        Ok(Some(s)) => {
            let tags: Vec<serde_json::Value> = settings
                .sts
                .session_tags
                .iter()
                .chain(s.tags.iter().map(|(k, v)| (k, v)))
                .map(|(k, v)| serde_json::json!({"Key": k, "Value": v}))
                .collect();
            let out = serde_json::json!({
                "archive": settings.archives.first().map_or("", |a| a.name.as_str()),
                "RoleArn": settings.sts.role_arn.as_str(),
                "mode": s.mode.as_str(),
                "RoleSessionName": session_name::role_session_name(user, &settings.server.app_name),
                "SourceIdentity": settings.sts.source_identity.then(|| session_name::source_identity(user)),
                "Policy": s.policy,
                "PolicyArns": s.policy_arns,
                "Tags": tags,
                "buckets": s.buckets,
                "narrowed_to": s.narrowed_to,
                "hash": s.hash,
                "limits": {
                    "policy_characters": [s.policy.as_ref().map_or(0, String::len), scope::MAX_INLINE_CHARS],
                    "policy_arns": [s.policy_arns.len(), scope::MAX_POLICY_ARNS],
                    "session_tags": [tags.len(), scope::MAX_SESSION_TAGS],
                    "longest_tag_key": [s.tags.iter().map(|(k, _)| k.len()).max().unwrap_or(0), 128],
                },
            });
            print_json(&out)
        }
        Ok(None) => {
            eprintln!(
                "stsvend: no bucket in {} is open to groups [{}]; the request would get 403",
                settings.sts.region,
                groups.join(", ")
            );
            ExitCode::FAILURE
        }
        Err(e) => fail(e),
    }
}
