//! `liteobs-client`: parse flags into a [`Config`](liteobs_client::Config), run one query,
//! print the result (or, with `-follow`, print as the server stores until Ctrl-C). Exit codes:
//! 0 success (and Ctrl-C during -follow), 1 the query failed, 2 bad flags (clap's usage errors
//! and filter values the server would reject), 3 the answer was printed but some of its
//! records could not be read (each named on stderr with its position, then a count).

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use clap::CommandFactory;
use clap::error::ErrorKind as ClapErrorKind;
use liteobs_client::{Cli, Clock, Terminal, View, Zone};

fn main() -> ExitCode {
    let cli = Cli::parse_args(std::env::args_os());
    if let Some(generated) = cli.generated() {
        let mut stdout = std::io::stdout().lock();
        return match liteobs_client::shell::write(generated, &mut stdout).and_then(|()| stdout.flush()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("liteobs-client: cannot write the output: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let now = chrono::Utc::now();
    let config = match cli.into_config(now) {
        Ok(config) => config,
        Err(e) => Cli::command().error(ClapErrorKind::ValueValidation, e).exit(),
    };
    let view = View::new(&Terminal::detect(), Clock { now, zone: Zone::Local });
    if config.mode == liteobs_client::cli::Mode::Follow {
        return follow(&config, &view);
    }
    let outcome = match actix_rt::System::new().block_on(liteobs_client::run(&config, &view)) {
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

/// `-follow`: prints until Ctrl-C (exit 0) or an error no reconnection can mend (exit 1). A
/// closed stdout (`| head`) ends it quietly.
fn follow(config: &liteobs_client::Config, view: &View) -> ExitCode {
    let result = actix_rt::System::new().block_on(async {
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr();
        let following = liteobs_client::follow::run(config, view, &mut stdout, &mut stderr);
        let interrupted = actix_rt::signal::ctrl_c();
        match futures_util::future::select(std::pin::pin!(following), std::pin::pin!(interrupted)).await {
            futures_util::future::Either::Left((result, _)) => result,
            futures_util::future::Either::Right(_) => Ok(()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(liteobs_client::follow::FollowError::Output(e)) if e.kind() == ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("liteobs-client: {e}");
            ExitCode::FAILURE
        }
    }
}
