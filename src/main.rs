//! The `rosetta` binary: `serve`, `check` and `demo` (DESIGN §7).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// glibc's malloc took a fifth of the proxy's CPU under load (arena locks when a buffer is
// freed on another thread than it was allocated on); mimalloc's per-thread heaps do not.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rosetta",
    version,
    about = "API gateway and compatibility translation proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, default_value = "config/rosetta.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and every enabled pack; non-zero exit on any error.
    /// Lists the jq filters that run on jaq rather than the filter plan.
    Check {
        #[arg(long, default_value = "config/rosetta.toml")]
        config: PathBuf,
        /// Refuse filters that run on jaq (as `strict_jq = true` in the configuration does).
        #[arg(long)]
        strict_jq: bool,
    },
    /// Start sample backends and the gateway in front of them, and print curl lines.
    Demo {
        #[arg(long, default_value = "config/rosetta.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, strict_jq } => rosetta::cli::check(&config, strict_jq),
        Command::Serve { config } => runtime().block_on(rosetta::cli::serve(&config)),
        Command::Demo { config } => runtime().block_on(rosetta::cli::demo(&config)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    rosetta::server::runtime().expect("tokio runtime")
}
