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

fn fail(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("stsvend: {error}");
    ExitCode::FAILURE
}
