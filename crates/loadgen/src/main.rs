//! `loadgen`: drives `POST /api/tasks` for a bounded time and measures the latency from each
//! request to its email arriving at the SMTP sink this process runs, and, for scaled apps, each
//! instance's share of the work. See `loadgen --help`.

mod audit;
mod cli;
mod driver;
mod memory;
mod plot;
mod report;
mod shares;
mod sink;
mod stats;
mod store_usage;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load; `Ok(false)` when a request failed, an email is missing or a create was never
/// recorded by the audit-logger.
async fn run() -> anyhow::Result<bool> {
    let args = cli::Args::parse();
    let sink = if args.expects_emails() {
        let sink = sink::SmtpSink::start(&args.smtp_listen)?;
        eprintln!("SMTP sink listening on {}", sink.addr());
        Some(sink)
    } else {
        None
    };
    let instances = match &args.run_log {
        Some(log) => shares::instances(
            &std::fs::read_to_string(log)
                .with_context(|| format!("--run-log {}", log.display()))?,
        ),
        None => Vec::new(),
    };
    let audit = audit::AuditWatch::start(&reqwest::Client::new(), &instances).await?;
    let before = memory::peak_memory(&args.processes, args.process_dir.as_deref());
    let audit_caught_up = |acknowledged: usize| {
        audit
            .as_ref()
            .is_none_or(|a| a.recorded() >= acknowledged as f64)
    };
    let run = driver::run(&args, sink.as_ref(), &audit_caught_up).await?;
    let audit = audit.map(|a| a.finish(&run));
    let memory = memory::peak_memory(&args.processes, args.process_dir.as_deref());
    let shares = match &args.run_log {
        Some(log) => shares::measure(&reqwest::Client::new(), log).await?,
        None => Vec::new(),
    };
    let mut result = report::Result::new(&args, &run, memory, shares);
    result.audit = audit;
    if !args.settle.is_zero() {
        eprintln!(
            "waiting {} before reading resident memory again",
            humantime::format_duration(args.settle)
        );
        tokio::time::sleep(args.settle).await;
        let after = memory::peak_memory(&args.processes, args.process_dir.as_deref());
        result.retained_memory = memory::retained(&before, &after, result.tasks_created());
        if let Some(log) = &args.run_log {
            let log = std::fs::read_to_string(log)?;
            let usage = store_usage::measure(
                &reqwest::Client::new(),
                &shares::instances(&log),
                result.tasks_created(),
            )
            .await?;
            result.store_usage = usage.families;
            result.store_memory = usage.stores;
        }
    }
    report::write(&result, &args.out)?;
    plot::write(&run, &args.plot)?;
    println!("{}", result.summary());
    let audit_missing = result.audit.as_ref().map_or(0.0, |a| a.missing);
    let clean = result.errors == 0 && result.emails_missing == 0 && audit_missing == 0.0;
    if !clean {
        eprintln!(
            "loadgen: {} request errors {:?}, {} emails missing, {} audit entries missing",
            result.errors, result.error_kinds, result.emails_missing, audit_missing
        );
    }
    Ok(clean)
}
