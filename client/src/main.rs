//! `chat-client`: a terminal client for ChatHTTP/1.1 chat rooms. See docs/CLIENT.md.

use std::io::IsTerminal;
use std::process::ExitCode;

use chathttp_client::args::Args;
use chathttp_client::{line, link, tui};
use clap::Parser;

fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match (args.tls, &args.ca) {
        (false, None) => None,
        (_, ca) => match link::tls_config(ca.as_deref()) {
            Ok(config) => Some(config),
            Err(error) => {
                eprintln!("chat-client: {error}");
                return ExitCode::from(2);
            }
        },
    };
    let interactive =
        !args.plain && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive {
        let history = args.history.unwrap_or(tui::DEFAULT_HISTORY);
        match tui::run(&args.server, args.name.as_deref(), history, tls) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("chat-client: terminal error: {error}");
                ExitCode::FAILURE
            }
        }
    } else {
        let Some(name) = args.name else {
            eprintln!("chat-client: line mode needs --name NAME");
            return ExitCode::from(2);
        };
        ExitCode::from(line::run(args.server, name, args.history, tls))
    }
}
