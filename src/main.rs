use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use stsvend::config;
use stsvend::startup::Application;

#[derive(Parser)]
#[command(
    name = "stsvend",
    version,
    about = "Temporary, read-only, in-region S3 credentials for OIDC users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
    /// Print the exact session policy a user with these groups would get.
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
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match config::load(config.as_deref()) {
            Ok((raw, _)) => {
                print!("{}", config::render_redacted(&raw));
                eprintln!("stsvend: configuration is valid");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Policy {
            config,
            user,
            groups,
        } => match config::load(config.as_deref()) {
            Ok((_, settings)) => print_policy(&settings, &user, &groups),
            Err(e) => fail(e),
        },
        Command::Serve { config } => {
            let settings = match config::load(config.as_deref()) {
                Ok((_, settings)) => settings,
                Err(e) => return fail(e),
            };
            stsvend::telemetry::init(settings.server.log_format);
            let runtime = actix_web::rt::System::new();
            match runtime.block_on(serve(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
    }
}

async fn serve(settings: config::Settings) -> anyhow::Result<()> {
    let public_url = settings.server.public_url.clone();
    let app = Application::build(settings).await?;
    tracing::info!(port = app.port(), %public_url, "stsvend listening");
    app.run_until_stopped().await?;
    tracing::info!("stsvend stopped");
    Ok(())
}

fn print_policy(settings: &config::Settings, user: &str, groups: &[String]) -> ExitCode {
    use stsvend::vend::{policy, session_name};
    let groups: Vec<String> = {
        let mut g = groups.to_vec();
        g.sort();
        g.dedup();
        g
    };
    match policy::for_groups(settings, &groups) {
        Some(p) => {
            println!("{}", p.json);
            eprintln!(
                "stsvend: {} characters (limit {}), sha256 {}…, buckets: {}",
                p.json.len(),
                policy::MAX_POLICY_CHARS,
                p.hash,
                p.buckets.join(", ")
            );
            eprintln!(
                "stsvend: RoleSessionName {}, SourceIdentity {}",
                session_name::role_session_name(user, &settings.server.app_name),
                if settings.sts.source_identity {
                    session_name::source_identity(user)
                } else {
                    "(off)".to_owned()
                }
            );
            ExitCode::SUCCESS
        }
        None => {
            eprintln!(
                "stsvend: no bucket in {} is open to groups [{}]; the request would get 403",
                settings.sts.region,
                groups.join(", ")
            );
            ExitCode::FAILURE
        }
    }
}

fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("stsvend: {error}");
    ExitCode::FAILURE
}
