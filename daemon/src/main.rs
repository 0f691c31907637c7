//! `arclockd`: parse arguments, harden the process, then provision or serve.

use std::path::PathBuf;

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
    /// Run even as root (a development machine; in production the unit runs
    /// arclockd as its own user).
    #[arg(
        long,
        global = true,
        env = "ARCLOCK_ALLOW_ROOT",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    allow_root: bool,
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
    let args = Args::parse();
    let mut hardened = arclockd::hardening::at_start(args.allow_root)?;
    let config = Config::load(&args.config, std::env::vars())?;
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return Ok(());
    }
    let log_level = init_logging(&config);
    if args.command.is_none() {
        arclockd::hardening::check(&config, &mut hardened)?;
    }
    tracing::info!(
        write_execute_denied = hardened.write_execute_denied,
        memlock_mib = ?hardened.memlock_mib,
        "process hardened: no core dumps, not dumpable, umask 077"
    );
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
                let app = arclockd::App::build(config)
                    .await?
                    .with_reload(arclockd::Reload {
                        config: args.config.clone(),
                        log_level,
                    });
                arclockd::run(app).await
            }
        }
    })
}

/// Installs the subscriber; the returned function swaps the level filter
/// (`log.level` is one of the settings a SIGHUP applies live).
fn init_logging(config: &Config) -> arclockd::LevelSetter {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::new(&config.log.level);
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // Colours only for a person at a terminal: the journal and log files
    // get plain text (escape codes there break grep and log shippers).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match config.log.format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry.with(layer).init(),
    }
    Box::new(move |level: &str| {
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}
