//! The user's side of the CLI: `credential-process` (and `configure`), built with or without
//! the service.

use std::path::PathBuf;
use std::process::ExitCode;

use super::fail;

/// `stsvend credential-process`.
#[derive(clap::Args)]
pub struct CredentialProcessArgs {
    /// The service's credentials URL, e.g. https://data.example.org/s3credentials
    #[arg(long)]
    endpoint: url::Url,
    /// File holding a bearer token (e.g. an Earthdata Login user token).
    #[arg(long, group = "auth")]
    token_file: Option<PathBuf>,
    /// Environment variable holding a bearer token.
    #[arg(long, group = "auth")]
    token_env: Option<String>,
    /// File holding a ticket (`stsvend ticket create`): for machines that cannot log in.
    #[arg(long, group = "auth")]
    ticket_file: Option<PathBuf>,
    /// Log in through the IdP with the credentials in ~/.netrc (or $NETRC).
    #[arg(long, group = "auth")]
    netrc: bool,
    /// Log in through the IdP with the credentials in this netrc file.
    #[arg(long, group = "auth")]
    netrc_file: Option<PathBuf>,
    /// `credential-process` (JSON for the AWS config) or `env` (shell exports).
    #[arg(long, value_enum, default_value = "credential-process")]
    format: HelperFormat,
    /// Where cached credentials live (default $XDG_CACHE_HOME/stsvend).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Region for `--format env` (default: what the service reports).
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    asking: Asking,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum HelperFormat {
    CredentialProcess,
    Env,
}

fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), stsvend::common::home_dir()) {
        (Ok(rest), Some(home)) => home.join(rest),
        _ => path.to_path_buf(),
    }
}

/// Less than everything, for a shorter time: what `?target=` and `?duration_seconds=` ask.
#[derive(clap::Args)]
pub struct Asking {
    /// Only this bucket or key prefix (`s3://bucket/prefix`); repeat for several.
    #[arg(long = "target")]
    targets: Vec<String>,
    /// A shorter lifetime than the service's, in seconds (900 upward).
    #[arg(long)]
    duration_seconds: Option<u32>,
}

impl Asking {
    /// The endpoint with the narrowing in its query: the service reads it there, and the
    /// helper's cache file (named after the URL) keeps narrowed credentials apart.
    fn query(&self, mut endpoint: url::Url) -> url::Url {
        if !self.targets.is_empty() || self.duration_seconds.is_some() {
            let mut query = endpoint.query_pairs_mut();
            for t in &self.targets {
                query.append_pair("target", t);
            }
            if let Some(d) = self.duration_seconds {
                query.append_pair("duration_seconds", &d.to_string());
            }
        }
        endpoint
    }

    /// The same ask as `credential-process` arguments.
    fn args(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.targets {
            out.extend(["--target".to_owned(), t.clone()]);
        }
        if let Some(d) = self.duration_seconds {
            out.extend(["--duration-seconds".to_owned(), d.to_string()]);
        }
        out
    }
}

/// The trimmed text of `what` (a token file, a ticket file) at `path`.
fn read_secret(path: &std::path::Path, what: &str) -> Result<String, stsvend::client::ClientError> {
    let path = expand_home(path);
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .map_err(|e| {
            stsvend::client::ClientError::Usage(format!(
                "cannot read the {what} {}: {e}",
                path.display()
            ))
        })
}

/// A bearer token from `path` (an IdP token).
fn read_token(path: &std::path::Path) -> Result<String, stsvend::client::ClientError> {
    read_secret(path, "token file")
}

/// A ticket from `path`, checked to be one before it is sent anywhere.
fn read_ticket(path: &std::path::Path) -> Result<String, stsvend::client::ClientError> {
    let text = read_secret(path, "ticket file")?;
    stsvend::client::tickets::ticket_secret(&text)
        .map(str::to_owned)
        .map_err(|e| {
            stsvend::client::ClientError::Usage(format!("{}: {e}", expand_home(path).display()))
        })
}

/// Credentials go only over https, or plain http to this machine.
fn checked_endpoint(endpoint: &url::Url) -> Result<(), stsvend::client::ClientError> {
    if endpoint.scheme() == "https"
        || (endpoint.scheme() == "http" && stsvend::common::is_loopback(endpoint))
    {
        return Ok(());
    }
    Err(stsvend::client::ClientError::Usage(
        "--endpoint must be https (plain http only to a loopback address)".into(),
    ))
}

#[allow(clippy::too_many_arguments)]
fn credential_process(
    endpoint: url::Url,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    ticket_file: Option<PathBuf>,
    netrc: bool,
    netrc_file: Option<PathBuf>,
    format: HelperFormat,
    cache_dir: Option<PathBuf>,
    region: Option<String>,
) -> Result<String, stsvend::client::ClientError> {
    let region = region
        .as_deref()
        .map(stsvend::client::checked::Region::parse)
        .transpose()
        .map_err(|e| stsvend::client::ClientError::Usage(format!("--region: {e}")))?;
    use stsvend::client::{self, Auth, ClientError, Options, OutputFormat};
    checked_endpoint(&endpoint)?;
    let auth = if let Some(path) = token_file {
        Auth::Bearer(read_token(&path)?)
    } else if let Some(path) = ticket_file {
        Auth::Bearer(read_ticket(&path)?)
    } else if let Some(var) = token_env {
        let token = std::env::var(&var).map_err(|_| {
            ClientError::Usage(format!("the environment variable {var} is not set"))
        })?;
        Auth::Bearer(token.trim().to_owned())
    } else if let Some(path) = netrc_file {
        Auth::Netrc(expand_home(&path))
    } else if netrc {
        let path = std::env::var_os("NETRC")
            .map(PathBuf::from)
            .unwrap_or_else(|| expand_home(std::path::Path::new("~/.netrc")));
        Auth::Netrc(path)
    } else {
        return Err(ClientError::Usage(
            "give --token-file, --token-env, --ticket-file, --netrc or --netrc-file".into(),
        ));
    };
    if matches!(&auth, Auth::Bearer(t) if t.is_empty()) {
        return Err(ClientError::Usage("the bearer token is empty".into()));
    }
    let options = Options {
        endpoint,
        auth,
        format: match format {
            HelperFormat::CredentialProcess => OutputFormat::CredentialProcess,
            HelperFormat::Env => OutputFormat::Env,
        },
        cache_dir: cache_dir.map(|d| expand_home(&d)),
        region,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ClientError::Usage(format!("cannot start: {e}")))?;
    runtime.block_on(client::run(options))
}

pub fn credential_process_command(args: CredentialProcessArgs) -> ExitCode {
    let CredentialProcessArgs {
        endpoint,
        token_file,
        token_env,
        ticket_file,
        netrc,
        netrc_file,
        format,
        cache_dir,
        region,
        asking,
    } = args;
    match credential_process(
        asking.query(endpoint),
        token_file,
        token_env,
        ticket_file,
        netrc,
        netrc_file,
        format,
        cache_dir,
        region,
    ) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `stsvend configure`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("login").required(true)))]
pub struct ConfigureArgs {
    /// The service's credentials URL, e.g. https://data.example.org/s3credentials
    #[arg(long)]
    endpoint: url::Url,
    /// The AWS profile to write (`default` is `[default]`).
    #[arg(
        long,
        required_unless_present = "all_archives",
        conflicts_with = "all_archives"
    )]
    profile: Option<String>,
    /// One profile per archive of the service that you may read, named after the archive
    /// (with --profile-prefix before it); archives you may not read are skipped.
    #[arg(long, conflicts_with = "targets")]
    all_archives: bool,
    /// With --all-archives: put this before each archive's name.
    #[arg(long, default_value = "", requires = "all_archives")]
    profile_prefix: String,
    /// File holding a bearer token (e.g. an Earthdata Login user token).
    #[arg(long, group = "login")]
    token_file: Option<PathBuf>,
    /// File holding a ticket (`stsvend ticket create`): a worker's profile.
    #[arg(long, group = "login")]
    ticket_file: Option<PathBuf>,
    /// Log in through the IdP with the credentials in ~/.netrc (or $NETRC).
    #[arg(long, group = "login")]
    netrc: bool,
    /// Log in through the IdP with the credentials in this netrc file.
    #[arg(long, group = "login")]
    netrc_file: Option<PathBuf>,
    /// The profile's region (default: the service's, or each archive's).
    #[arg(long)]
    region: Option<String>,
    #[command(flatten)]
    asking: Asking,
    /// Replace the profile even if stsvend did not write it.
    #[arg(long)]
    force: bool,
}

/// An absolute path as the profile must name it (the AWS SDK runs the command from anywhere).
fn absolute(path: &std::path::Path) -> PathBuf {
    let path = expand_home(path);
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|d| d.join(&path))
        .unwrap_or(path)
}

/// The helper's command line for `endpoint`: this program, its login and what is asked.
fn helper_command(
    helper: &std::path::Path,
    endpoint: &url::Url,
    args: &ConfigureArgs,
) -> Vec<String> {
    let mut command = vec![
        helper.display().to_string(),
        "credential-process".to_owned(),
        "--endpoint".to_owned(),
        endpoint.to_string(),
    ];
    if let Some(f) = &args.token_file {
        command.extend(["--token-file".to_owned(), absolute(f).display().to_string()]);
    } else if let Some(f) = &args.ticket_file {
        command.extend([
            "--ticket-file".to_owned(),
            absolute(f).display().to_string(),
        ]);
    } else if let Some(f) = &args.netrc_file {
        command.extend(["--netrc-file".to_owned(), absolute(f).display().to_string()]);
    } else if args.netrc {
        command.push("--netrc".to_owned());
    }
    command.extend(args.asking.args());
    command
}

/// Why a profile is not written.
enum NotWritten {
    /// The file cannot take it (a profile stsvend did not write, text that would not read
    /// back): nothing at all is written.
    Refused(String),
    /// Its credential_process fails (for one archive among several: that archive is skipped).
    Fails(String),
}

/// `text` with `profile` in it, once what botocore will read back is proved to work: the new
/// text, or why not (nothing is written either way).
fn proved(
    config: &std::path::Path,
    text: &str,
    profile: &stsvend::client::configure::Profile<'_>,
    force: bool,
) -> Result<String, NotWritten> {
    use stsvend::client::configure;
    let after = match configure::update(text, profile, force) {
        Ok(t) => t,
        Err(configure::Refusal::NotOurs(name)) => {
            return Err(NotWritten::Refused(format!(
                "{} already has a profile {name} that stsvend did not write; give --force to replace it",
                config.display()
            )))
        }
        Err(configure::Refusal::Invalid(why)) => return Err(NotWritten::Refused(why)),
    };
    // What the SDK will run is what botocore reads back from the new text: that command is
    // the one proved to work, before anything is written.
    let words = configure::read_back(text, &after, profile)
        .map_err(|e| NotWritten::Refused(format!("{}: {e}; nothing written", config.display())))?;
    run_helper(std::path::Path::new(&words[0]), &words[1..], &[]).map_err(|e| {
        NotWritten::Fails(format!(
            "the profile's credential_process fails ({e}); nothing written to {}",
            config.display()
        ))
    })?;
    Ok(after)
}

pub fn configure_command(args: ConfigureArgs) -> ExitCode {
    use stsvend::client::{checked, configure};
    // The line it writes is quoted for botocore's POSIX split and `sh -c`, and proved by
    // reading it back that way; on Windows botocore splits differently and the SDKs run no
    // shell, which this helper cannot prove here: say what to write instead.
    if cfg!(not(unix)) {
        return fail(format!(
            "configure writes profiles on Linux and macOS; on Windows add to %USERPROFILE%\\.aws\\config under [profile NAME]: credential_process = \"{}\" credential-process --endpoint {} --token-file <path>",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "stsvend".into()),
            args.endpoint
        ));
    }
    let Some(config) = configure::config_path() else {
        return fail("no AWS config file: set HOME or AWS_CONFIG_FILE");
    };
    let asked_region = match args
        .region
        .as_deref()
        .map(checked::Region::parse)
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("--region: {e}")),
    };
    let helper = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(format!("cannot find this program's own path: {e}")),
    };
    let before = match std::fs::read_to_string(&config) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return fail(format!("cannot read {}: {e}", config.display())),
    };
    let old = before.as_deref().unwrap_or_default();
    let (after, written) = if args.all_archives {
        match every_archive(&config, old, &helper, &args, asked_region.as_ref()) {
            Ok(done) => done,
            Err(e) => return fail(e),
        }
    } else {
        let name = args.profile.clone().unwrap_or_default();
        if let Err(e) = checked::profile_name(&name) {
            return fail(e);
        }
        let command = helper_command(&helper, &args.endpoint, &args);
        // Without --region, the service says which region its buckets are in (the helper
        // checks that it is a region name before printing it).
        let region = match asked_region {
            Some(r) => r,
            None => match run_helper(&helper, &command[1..], &["--format", "env"]) {
                Ok(out) => match out
                    .lines()
                    .find_map(|l| l.strip_prefix("export AWS_REGION="))
                    .map(|v| checked::Region::parse(v.trim_matches('\'')))
                {
                    Some(Ok(r)) => r,
                    Some(Err(e)) => return fail(format!("the service's region: {e}")),
                    None => return fail("the service did not say its region: give --region"),
                },
                Err(e) => return fail(e),
            },
        };
        let profile = configure::Profile {
            name: &name,
            region: Some(&region),
            command,
        };
        match proved(&config, old, &profile, args.force) {
            Ok(after) => (after, vec![name]),
            Err(NotWritten::Refused(e) | NotWritten::Fails(e)) => return fail(e),
        }
    };
    let backup = match configure::write(&config, before.as_deref(), &after) {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot write {}: {e}", config.display())),
    };
    eprintln!(
        "stsvend: profile{} {} written to {}{}; it works: aws --profile {} s3 ls",
        if written.len() > 1 { "s" } else { "" },
        written.join(", "),
        config.display(),
        backup
            .map(|b| format!(" (the previous file is {})", b.display()))
            .unwrap_or_default(),
        written.first().map_or("", String::as_str),
    );
    ExitCode::SUCCESS
}

/// `--all-archives`: a profile for each archive the service lists whose credential the user
/// gets; the others are skipped, saying why. Err when none works.
fn every_archive(
    config: &std::path::Path,
    old: &str,
    helper: &std::path::Path,
    args: &ConfigureArgs,
    region: Option<&stsvend::client::checked::Region>,
) -> Result<(String, Vec<String>), String> {
    use stsvend::client::{archives, checked, configure};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    let listed = runtime.block_on(archives::fetch(&args.endpoint))?;
    let mut text = old.to_owned();
    let mut written = Vec::new();
    for archive in &listed {
        let name = format!("{}{}", args.profile_prefix, archive.name);
        checked::profile_name(&name)?;
        let profile = configure::Profile {
            name: &name,
            region: Some(region.unwrap_or(&archive.region)),
            command: helper_command(helper, &archive.endpoint, args),
        };
        match proved(config, &text, &profile, args.force) {
            Ok(after) => {
                text = after;
                written.push(name);
            }
            Err(NotWritten::Refused(e)) => return Err(e),
            Err(NotWritten::Fails(e)) => {
                eprintln!("stsvend: archive {} skipped: {e}", archive.name)
            }
        }
    }
    if written.is_empty() {
        return Err(format!(
            "no archive of {} gave you a credential; nothing written",
            checked::shown(args.endpoint.as_str())
        ));
    }
    Ok((text, written))
}

/// Runs the helper (this program) with `args` and `extra`: its stdout, or its one-line error.
fn run_helper(helper: &std::path::Path, args: &[String], extra: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(helper)
        .args(args)
        .args(extra)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", helper.display()))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    Err(err
        .lines()
        .last()
        .unwrap_or("failed")
        .trim_start_matches("stsvend: ")
        .to_owned())
}

/// `stsvend ticket`: tickets for machines that cannot log in.
#[derive(clap::Args)]
pub struct TicketArgs {
    #[command(subcommand)]
    action: TicketAction,
}

/// Who is asking: the service and your own token (tickets are made with a token, not with
/// a ticket or a .netrc login).
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("who").required(true)))]
struct TicketLogin {
    /// The service's credentials URL, e.g. https://data.example.org/s3credentials
    #[arg(long)]
    endpoint: url::Url,
    /// File holding your bearer token (e.g. an Earthdata Login user token).
    #[arg(long, group = "who")]
    token_file: Option<PathBuf>,
    /// Environment variable holding your bearer token.
    #[arg(long, group = "who")]
    token_env: Option<String>,
}

impl TicketLogin {
    fn token(&self) -> Result<String, stsvend::client::ClientError> {
        use stsvend::client::ClientError;
        checked_endpoint(&self.endpoint)?;
        let token = match (&self.token_file, &self.token_env) {
            (Some(path), _) => read_token(path)?,
            (None, Some(var)) => std::env::var(var)
                .map_err(|_| {
                    ClientError::Usage(format!("the environment variable {var} is not set"))
                })?
                .trim()
                .to_owned(),
            (None, None) => {
                return Err(ClientError::Usage(
                    "give --token-file or --token-env".into(),
                ))
            }
        };
        if token.is_empty() {
            return Err(ClientError::Usage("the bearer token is empty".into()));
        }
        Ok(token)
    }
}

#[derive(clap::Subcommand)]
enum TicketAction {
    /// Make a ticket: print it (or write it to --output), shown this once.
    Create {
        #[command(flatten)]
        login: TicketLogin,
        /// Only this bucket or key prefix (`s3://bucket/prefix`); repeat for several.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// The lifetime of the credentials it gets, in seconds (900 upward).
        #[arg(long)]
        duration_seconds: Option<u32>,
        /// How long the ticket lives, in seconds (default: the service's).
        #[arg(long)]
        expires_in: Option<u64>,
        /// A name to recognise it by in `stsvend ticket list`.
        #[arg(long)]
        label: Option<String>,
        /// Write the ticket to this file (mode 0600) instead of printing it.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// List your live tickets (never their secrets).
    List {
        #[command(flatten)]
        login: TicketLogin,
    },
    /// End a ticket, on every replica of the service within a second.
    Delete {
        #[command(flatten)]
        login: TicketLogin,
        /// The ticket's id (from `stsvend ticket list`).
        id: String,
    },
}

fn block_on<T>(
    work: impl std::future::Future<Output = Result<T, stsvend::client::ClientError>>,
) -> Result<T, stsvend::client::ClientError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| stsvend::client::ClientError::Usage(format!("cannot start: {e}")))?
        .block_on(work)
}

pub fn ticket_command(args: TicketArgs) -> ExitCode {
    use stsvend::client::tickets;
    let result = match args.action {
        TicketAction::Create {
            login,
            targets,
            duration_seconds,
            expires_in,
            label,
            output,
        } => login.token().and_then(|token| {
            let mut request = serde_json::json!({});
            if !targets.is_empty() {
                request["targets"] = serde_json::json!(targets);
            }
            if let Some(d) = duration_seconds {
                request["duration_seconds"] = serde_json::json!(d);
            }
            if let Some(e) = expires_in {
                request["expires_in"] = serde_json::json!(e);
            }
            if let Some(l) = &label {
                request["label"] = serde_json::json!(l);
            }
            let made = block_on(tickets::create(&login.endpoint, &token, &request))?;
            let expires = made.expires_at.format("%Y-%m-%d %H:%M UTC");
            match output {
                Some(path) => {
                    let path = expand_home(&path);
                    stsvend::common::replace_file(&path, format!("{}\n", made.ticket).as_bytes(), 0o600)
                        .map_err(|e| {
                            stsvend::client::ClientError::Usage(format!(
                                "cannot write {}: {e}",
                                path.display()
                            ))
                        })?;
                    eprintln!(
                        "stsvend: ticket {} written to {} (expires {expires}); `stsvend ticket delete {}` ends it",
                        made.id,
                        path.display(),
                        made.id
                    );
                    Ok(String::new())
                }
                None => {
                    eprintln!(
                        "stsvend: ticket {} (expires {expires}); keep it like a password, `stsvend ticket delete {}` ends it",
                        made.id, made.id
                    );
                    Ok(format!("{}\n", made.ticket))
                }
            }
        }),
        TicketAction::List { login } => login
            .token()
            .and_then(|token| block_on(tickets::list(&login.endpoint, &token)))
            .map(|list| tickets::render_list(&list)),
        TicketAction::Delete { login, id } => login.token().and_then(|token| {
            block_on(tickets::delete(&login.endpoint, &token, &id))?;
            Ok(format!("ticket {id} deleted\n"))
        }),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
