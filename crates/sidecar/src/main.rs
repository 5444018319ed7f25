//! `sidecar`: a local stand-in for `daprd` (same flags, same HTTP API) and for `dapr run -f`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sidecar::cli::{Cli, Command, normalize_args};
use sidecar::{runfile, runner, scale};

/// mimalloc instead of the system allocator. One runner process hosts every app's sidecar and
/// the in-memory store and broker, and its allocations come from many Tokio threads: glibc's
/// malloc gives each thread group its own arena and returns an arena's freed pages to the OS
/// only from the top of its heap, so after a load run the runner kept most of its peak
/// resident even once the data was gone. mimalloc frees (purges) unused pages of its segments
/// back to the OS shortly after they empty, once the thread that owns them calls into it again,
/// which [`sidecar::cli::runtime`] makes every worker do as it goes idle; so resident memory
/// follows what is still held.
/// Its 2.x line (feature `v2`): with 3.x, the crate's default, the same 60 s load run left the
/// runner 3,317 bytes per task against 2,393 with 2.x, and mimalloc's own statistics
/// (`MIMALLOC_SHOW_STATS=1`) showed 3.x's committed memory at its peak to the end of the run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Some(Command::Run(args)) => {
            let mut plan = runfile::load(&args.file).map_err(|e| e.to_string())?;
            scale::apply(&mut plan, &args.scale).map_err(|e| e.to_string())?;
            let verbosest = plan.apps.iter().filter_map(|a| a.log_level).min();
            sidecar::cli::init_tracing(
                verbosest.map_or(args.log_level, |l| l.min(args.log_level)),
                false,
            );
            for warning in &plan.warnings {
                tracing::warn!(file = %plan.file.display(), "{warning}");
            }
            let grace = Duration::from_secs(args.shutdown_grace_seconds);
            let console =
                runner::console::config(&args, &plan.console).map_err(|e| e.to_string())?;
            let report = runner::run_plan(plan, grace, console)
                .await
                .map_err(|e| e.to_string())?;
            Ok(if report.app_failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        None => {
            let cfg = cli
                .daprd
                .resolve(|k| std::env::var(k).ok())
                .map_err(|e| e.to_string())?;
            sidecar::cli::init_tracing(cfg.log_level, cfg.log_as_json);
            for warning in &cfg.warnings {
                tracing::warn!("{warning}");
            }
            runner::run_single(cfg).await.map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(normalize_args(std::env::args_os()));
    let runtime = match sidecar::cli::runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
