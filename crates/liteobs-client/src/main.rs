//! `liteobs-client`: parse flags into a [`Config`](liteobs_client::Config), run one query,
//! print the result. Exit codes: 0 success, 1 the query failed, 2 bad flags (clap's usage
//! errors and filter values the server would reject), 3 the answer was printed but some of its
//! records could not be read (each named on stderr with its position, then a count).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind as ClapErrorKind;
use liteobs_client::{Cli, Terminal};

fn main() -> ExitCode {
    let cli = Cli::parse_args(std::env::args_os());
    let config = match cli.into_config(chrono::Utc::now()) {
        Ok(config) => config,
        Err(e) => Cli::command().error(ClapErrorKind::ValueValidation, e).exit(),
    };
    let term = Terminal::detect();
    let outcome = match actix_rt::System::new().block_on(liteobs_client::run(&config, &term)) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("liteobs-client: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let output = outcome.output;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(output.stdout.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        // `liteobs-client | head` closing the pipe early is not an error worth a message.
        Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
        Err(e) => {
            eprintln!("liteobs-client: cannot write the output: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(note) = output.note {
        eprintln!("liteobs-client: {note}");
    }
    if !outcome.unreadable.is_empty() {
        for u in &outcome.unreadable {
            eprintln!(
                "liteobs-client: record {} of the answer is unreadable, skipped: {}",
                u.index, u.reason
            );
        }
        eprintln!(
            "liteobs-client: {} of {} records in the answer could not be read; the others are shown",
            outcome.unreadable.len(),
            outcome.received
        );
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}
