//! `arclockd`: parse arguments, harden the process, then provision or serve.

use std::path::PathBuf;
use std::process::ExitCode;

use arclockd::config::{Config, LogFormat};
use clap::{CommandFactory, Parser, Subcommand};

/// sysexits.h `EX_CONFIG`: the configuration is wrong. The unit's
/// `RestartPreventExitStatus=78` keeps systemd from restarting into it again.
const EX_CONFIG: u8 = 78;

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
    /// Validate the configuration (including ARCLOCK_* overrides) and exit
    /// (78, EX_CONFIG, when it is wrong). Runs as any user, root included.
    #[arg(long)]
    check_config: bool,
    /// Print a man page or a shell completion script and exit (packaging).
    #[arg(long, value_name = "KIND", hide = true)]
    generate: Option<arclockd::cli::Generate>,
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

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = args.generate {
        return match kind.write(Args::command(), &mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("arclockd: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Checking a file changes nothing and reads no secret: root may do it.
    let hardened = match arclockd::hardening::at_start(args.allow_root || args.check_config) {
        Ok(h) => h,
        Err(e) => return fail(&e.into()),
    };
    let config = match Config::load(&args.config, std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("arclockd: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return check_token(&config);
    }
    match serve(args, config, hardened) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// `--check-config`'s look at the token: what it lacks of what ArcLock
/// needs (no PIN is read). A token that cannot be asked from here (absent,
/// or its module configured only for the service) is a note, not an error.
fn check_token(config: &Config) -> ExitCode {
    let (module, label) = (&config.hsm.module, &config.hsm.token_label);
    let signing = config.hsm.signing();
    match arclock_hsm::mechanism::lacks(module, label, config.hsm.slot, signing) {
        Ok(lacks) if lacks.is_empty() => {
            println!("HSM token {label:?}: offers every mechanism ArcLock needs");
            ExitCode::SUCCESS
        }
        Ok(lacks) => {
            for lack in &lacks {
                eprintln!("arclockd: HSM token {label:?} lacks {lack}");
            }
            ExitCode::from(EX_CONFIG)
        }
        Err(e) => {
            println!("HSM token {label:?} not checked: {e}");
            ExitCode::SUCCESS
        }
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("arclockd: {e:#}");
    ExitCode::FAILURE
}

fn serve(
    args: Args,
    config: Config,
    mut hardened: arclockd::hardening::Report,
) -> anyhow::Result<()> {
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
/// (`log.level` is one of the settings a SIGHUP applies live). `RUST_LOG`,
/// when set, wins over `log.level`, at start and on reload, as Rust users
/// expect.
fn init_logging(config: &Config) -> arclockd::LevelSetter {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let filter = match from_env.as_deref() {
        Some(directives) => tracing_subscriber::EnvFilter::new(directives),
        None => tracing_subscriber::EnvFilter::new(&config.log.level),
    };
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
    if let Some(directives) = &from_env {
        tracing::info!(filter = %directives, "log filter from RUST_LOG (log.level ignored)");
    }
    Box::new(move |level: &str| {
        if from_env.is_some() {
            return Err("RUST_LOG is set and takes precedence over log.level".into());
        }
        let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    })
}
