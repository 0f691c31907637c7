//! `arclock-console`: terminal set-up and the event loop. Keys, a 1 s refresh
//! and the live log stream all feed one [`Console`]; the terminal is restored
//! on every exit path, panics included.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use arclock_console::model::StreamEvent;
use arclock_console::{Client, Command, Console, LogQuery, View, ui};
use clap::{CommandFactory, Parser};
use crossterm::event::{Event, EventStream, MouseButton, MouseEventKind};
use crossterm::{execute, terminal};
use futures_util::StreamExt;
use tokio::sync::mpsc;

/// ArcLock operator console: live auth log, lockouts, users, health.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// The daemon's admin socket (`[admin] socket` in arclockd.toml).
    /// Default: the dev daemon's `var/run/arclockd.sock` when run from a
    /// checkout where it exists, else the installed `/run/arclockd/admin.sock`.
    #[arg(long, env = "ARCLOCK_ADMIN_SOCKET")]
    socket: Option<PathBuf>,
    /// Print a man page or a shell completion script and exit (packaging).
    #[arg(long, value_name = "KIND", hide = true)]
    generate: Option<Generate>,
    /// Let the mouse switch views by clicking the tab bar.
    #[arg(long)]
    mouse: bool,
    /// Print one view as text (dashboard, logs, lockouts, users) and exit.
    #[arg(long, value_name = "VIEW")]
    snapshot: Option<String>,
    /// Size of the --snapshot text, columns x rows.
    #[arg(long, default_value = "100x30", value_name = "WxH")]
    size: String,
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// One-shot operator actions (without one: the interactive console).
#[derive(clap::Subcommand)]
enum Cmd {
    /// Make a single-use enrolment invitation (`[registration] mode =
    /// "invite"`) and print its code, which is shown only this once.
    Invite {
        /// Only this address may register with it.
        #[arg(long)]
        email: Option<String>,
        /// How long it lasts (default: the daemon's `invite_ttl_secs`).
        #[arg(long, value_name = "SECONDS")]
        ttl_secs: Option<u64>,
    },
    /// Every arclockd sharing this one's store (several instances behind a
    /// balancer), from their heartbeats.
    Instances,
    /// The tamper-evident audit trail of operator actions and security
    /// events.
    Audit {
        #[command(subcommand)]
        action: AuditCmd,
    },
    /// Key-encryption keys in the HSM (what the dashboard's R and X do).
    Keys {
        #[command(subcommand)]
        action: KeysCmd,
    },
}

#[derive(clap::Subcommand)]
enum KeysCmd {
    /// Make a new KEK version and re-wrap every user's key under it.
    Rotate,
    /// Crypto-shredding: rotate, then destroy every older KEK, so that no
    /// backup or copy of the store taken before (deleted accounts included)
    /// opens again. Run it after deletions, or from a timer.
    Retire,
}

#[derive(clap::Subcommand)]
enum AuditCmd {
    /// Recompute the hash chain and check every HSM seal; exits non-zero
    /// and names the first entry where the trail breaks.
    Verify,
    /// Seal the current head in the HSM now (before a backup, a hand-over).
    Seal,
}

/// Documents `make deb` collects (as arclockd's `--generate`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum Generate {
    Man,
    Bash,
    Zsh,
    Fish,
}

/// The socket `make run` starts the dev daemon on, relative to the checkout.
const DEV_SOCKET: &str = "var/run/arclockd.sock";
/// The socket of the installed unit (`systemd/arclockd.toml`).
const INSTALLED_SOCKET: &str = "/run/arclockd/admin.sock";

/// The socket to speak to when none was named: a dev daemon started from
/// this checkout wins, because an operator on a server has no `var/` here.
fn default_socket() -> PathBuf {
    let dev = PathBuf::from(DEV_SOCKET);
    if std::fs::symlink_metadata(&dev).is_ok() {
        dev
    } else {
        PathBuf::from(INSTALLED_SOCKET)
    }
}

/// What the background stream task tells the loop.
enum Feed {
    Event(StreamEvent),
    Lost,
    /// A key job running beside the screen ended: what to tell the operator.
    Notice(String),
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(kind) = args.generate {
        let mut command = Args::command();
        let out = &mut std::io::stdout();
        let shell = match kind {
            Generate::Man => return Ok(clap_mangen::Man::new(command).render(out)?),
            Generate::Bash => clap_complete::Shell::Bash,
            Generate::Zsh => clap_complete::Shell::Zsh,
            Generate::Fish => clap_complete::Shell::Fish,
        };
        clap_complete::generate(shell, &mut command, "arclock-console", out);
        return Ok(());
    }
    let socket = args.socket.clone().unwrap_or_else(default_socket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = Client::new(&socket);
        match &args.command {
            Some(Cmd::Invite { email, ttl_secs }) => {
                return invite(&client, email.as_deref(), *ttl_secs).await;
            }
            Some(Cmd::Audit { action }) => return audit(&client, action).await,
            Some(Cmd::Instances) => return instances(&client).await,
            Some(Cmd::Keys { action }) => {
                let cmd = match action {
                    KeysCmd::Rotate => Command::RotateKek,
                    KeysCmd::Retire => Command::RetireKeks,
                };
                let said = Console::key_job(&client, &cmd)
                    .await
                    .context("the key job did not complete")?;
                println!("{said}");
                return Ok(());
            }
            None => {}
        }
        match &args.snapshot {
            Some(view) => snapshot(&client, view, &args.size).await,
            None => interactive(client, args.mouse).await,
        }
    })
}

async fn invite(client: &Client, email: Option<&str>, ttl_secs: Option<u64>) -> anyhow::Result<()> {
    let invite = client
        .create_invite(email, ttl_secs)
        .await
        .context("arclockd refused the invitation")?;
    println!("invitation code: {}", invite.code);
    println!(
        "for:             {}",
        invite.email.as_deref().unwrap_or("anyone")
    );
    println!("expires:         {}", invite.expires_at);
    println!("It works once. arclockd keeps only its hash: this is the only copy.");
    Ok(())
}

async fn instances(client: &Client) -> anyhow::Result<()> {
    let list = client
        .instances()
        .await
        .context("arclockd could not list the instances")?;
    println!(
        "{:<16}  {:<20}  {:>8}  {:<8}  {:<5}  last seen",
        "instance", "host", "pid", "version", "alive"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    for i in list {
        println!(
            "{:<16}  {:<20}  {:>8}  {:<8}  {:<5}  {} s ago{}",
            i.id,
            i.host,
            i.pid,
            i.version,
            if i.alive { "yes" } else { "no" },
            (now - i.seen_at).max(0) / 1000,
            if i.this { "  (this one)" } else { "" }
        );
    }
    Ok(())
}

async fn audit(client: &Client, action: &AuditCmd) -> anyhow::Result<()> {
    match action {
        AuditCmd::Seal => {
            match client.audit_seal().await.context("arclockd did not seal")? {
                Some(seq) => println!("sealed through entry {seq}"),
                None => println!("nothing new to seal"),
            }
            Ok(())
        }
        AuditCmd::Verify => {
            let v = client
                .audit_verify()
                .await
                .context("arclockd could not check the trail")?;
            println!("entries:            {}", v.entries);
            println!("seals verified:     {}", v.seals_verified);
            if v.seals_unverifiable > 0 {
                println!(
                    "seals by keys no longer in the token: {} (hash checked, signature not)",
                    v.seals_unverifiable
                );
            }
            println!(
                "sealed through:     {} ({} entries since)",
                v.sealed_through,
                v.entries.saturating_sub(v.sealed_through)
            );
            match v.broken {
                None => {
                    println!("audit trail intact");
                    Ok(())
                }
                Some(b) => {
                    println!("BROKEN at entry {}: {}", b.seq, b.reason);
                    anyhow::bail!("the audit trail does not hold from entry {}", b.seq)
                }
            }
        }
    }
}

async fn snapshot(client: &Client, view: &str, size: &str) -> anyhow::Result<()> {
    let view = View::parse(view).context("view must be dashboard, logs, lockouts or users")?;
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .context("--size must look like 100x30")?;
    let mut console = Console::new();
    console.refresh(client).await;
    // A second scrape a moment later gives the dashboard one interval.
    tokio::time::sleep(Duration::from_millis(200)).await;
    console.refresh(client).await;
    console.view = view;
    println!("{}", ui::render_text(&console, w, h));
    anyhow::ensure!(
        console.link == arclock_console::Link::Up,
        "arclockd did not answer at {}",
        client.socket().display()
    );
    Ok(())
}

/// Restores the terminal when dropped, however the loop ends.
struct Screen {
    mouse: bool,
}

impl Screen {
    fn enter(mouse: bool) -> anyhow::Result<Self> {
        terminal::enable_raw_mode()?;
        let mut out = std::io::stdout();
        execute!(out, terminal::EnterAlternateScreen)?;
        if mouse {
            execute!(out, crossterm::event::EnableMouseCapture)?;
        }
        Ok(Screen { mouse })
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = std::io::stdout();
        if self.mouse {
            let _ = execute!(out, crossterm::event::DisableMouseCapture);
        }
        let _ = execute!(out, terminal::LeaveAlternateScreen);
        let _ = terminal::disable_raw_mode();
        let _ = out.flush();
    }
}

/// Keeps the live log open, reopening it (every second) after it drops.
async fn follow(client: Client, tx: mpsc::Sender<Feed>) {
    loop {
        if let Ok(mut stream) = client.stream(&LogQuery::default()).await {
            while let Some(Ok(ev)) = stream.next().await {
                if tx.send(Feed::Event(ev)).await.is_err() {
                    return;
                }
            }
        }
        if tx.send(Feed::Lost).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn interactive(client: Client, mouse: bool) -> anyhow::Result<()> {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(std::io::stdout(), terminal::LeaveAlternateScreen);
        default_hook(info);
    }));
    let _screen = Screen::enter(mouse)?;
    let mut term =
        ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
    let mut console = Console::new();
    let (tx, mut feed) = mpsc::channel(1024);
    tokio::spawn(follow(client.clone(), tx.clone()));
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while !console.quit {
        term.draw(|f| ui::draw(f, &console))?;
        tokio::select! {
            ev = keys.next() => match ev {
                Some(Ok(Event::Key(k))) if k.kind == crossterm::event::KeyEventKind::Press => {
                    match console.on_key(k) {
                        // Runs beside the screen: its progress shows on the dashboard.
                        Some(cmd) if cmd.is_key_job() => {
                            console.notify(format!("{}: started", cmd.prompt().split('?').next().unwrap_or("key job")));
                            let (client, tx) = (client.clone(), tx.clone());
                            tokio::spawn(async move {
                                let said = Console::key_job(&client, &cmd)
                                    .await
                                    .unwrap_or_else(|e| format!("Failed: {e}"));
                                let _ = tx.send(Feed::Notice(said)).await;
                            });
                        }
                        Some(cmd) => console.execute(&client, cmd).await,
                        None => {}
                    }
                }
                Some(Ok(Event::Mouse(m))) if m.kind == MouseEventKind::Down(MouseButton::Left) && m.row == 0 => {
                    // Tabs are drawn as "N Title" separated by one divider cell.
                    let mut x = 0u16;
                    for v in View::ALL {
                        let w = u16::try_from(v.title().len() + 4).unwrap_or(u16::MAX);
                        if m.column < x + w {
                            console.view = v;
                            break;
                        }
                        x += w;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            _ = tick.tick() => console.refresh(&client).await,
            Some(f) = feed.recv() => match f {
                Feed::Event(ev) => console.on_stream(ev),
                // Find out at once whether the daemon is gone or only the stream.
                Feed::Lost if console.link == arclock_console::Link::Up => console.refresh(&client).await,
                Feed::Lost => {}
                Feed::Notice(text) => {
                    console.notify(text);
                    console.refresh(&client).await;
                }
            },
        }
    }
    Ok(())
}
