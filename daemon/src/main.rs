//! `arclockd`: parse arguments, harden the process, then provision or serve.

use std::path::PathBuf;

use anyhow::Context;
use arclockd::config::{Config, LogFormat};
use clap::{Parser, Subcommand};

/// ArcLock face-biometric authentication daemon.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Configuration file.
    #[arg(
        long,
        short,
        env = "ARCLOCK_CONFIG",
        default_value = "config/arclockd.toml"
    )]
    config: PathBuf,
    /// Validate the configuration (including ARCLOCK_* overrides) and exit.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Dev/embedded set-up: SoftHSM2 token, keys and a self-signed TLS
    /// certificate, each only if missing.
    Provision,
}

fn main() -> anyhow::Result<()> {
    arclock_secmem::process::disable_core_dumps().context("disabling core dumps")?;
    arclock_secmem::process::set_private_umask();
    let args = Args::parse();
    let config = Config::load(&args.config, std::env::vars())?;
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return Ok(());
    }
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match args.command {
            Some(Command::Provision) => {
                for line in arclockd::provision::run(&config).await? {
                    println!("provision: {line}");
                }
                println!("provision: done");
                Ok(())
            }
            None => {
                let app = arclockd::App::build(config).await?;
                arclockd::run(app).await
            }
        }
    })
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.level);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
