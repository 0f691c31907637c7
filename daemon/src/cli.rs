//! What a package needs from a binary's command line besides parsing it: a
//! man page and completion scripts, generated from the same clap definition,
//! so they can never describe options the binary does not have.
//!
//! Both binaries take a hidden `--generate KIND` (as ripgrep does) and print
//! the result; `make deb` collects them.

use std::io::Write;

/// One generated document.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Generate {
    /// roff man page, section 8 for the daemon and 1 for the console.
    Man,
    Bash,
    Zsh,
    Fish,
}

impl Generate {
    /// Writes the document for `command` (from `Args::command()`).
    pub fn write(self, mut command: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
        use clap_complete::Shell;
        let name = command.get_name().to_string();
        let shell = match self {
            Generate::Man => return clap_mangen::Man::new(command).section("8").render(out),
            Generate::Bash => Shell::Bash,
            Generate::Zsh => Shell::Zsh,
            Generate::Fish => Shell::Fish,
        };
        clap_complete::generate(shell, &mut command, name, out);
        Ok(())
    }
}
