//! The benchmark and profiling scripts: they parse, refuse bad arguments with a clear message,
//! render the benchmark table with its ratios and a before/after comparison from summary files,
//! and a `--quick` run of the quick rows of `scripts/bench-table.sh` over the real (debug)
//! binaries produces a table whose every row answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use e2e::Binaries;
use serde_json::{Value, json};

fn script(workspace: &Path, name: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg(workspace.join("scripts").join(name));
    command.current_dir(workspace);
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn workspace() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_bench_scripts_parse() {
    let root = workspace();
    for file in [
        "scripts/bench-table.sh",
        "scripts/profile.sh",
        "scripts/bench-fastapi.sh",
        "scripts/lib/bench-run.sh",
        "scripts/lib/bench-venv.sh",
    ] {
        let output = Command::new("bash")
            .arg("-n")
            .arg(root.join(file))
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}: {:?}", text(&output));
    }
    for file in [
        "scripts/lib/bench_table.py",
        "scripts/lib/callgrind_report.py",
    ] {
        // Parsed, not compiled: py_compile would leave a __pycache__ in the tree.
        let output = Command::new("python3")
            .args(["-c", "import ast, sys; ast.parse(open(sys.argv[1]).read())"])
            .arg(root.join(file))
            .output()
            .unwrap();
        assert!(output.status.success(), "{file}: {:?}", text(&output));
    }
}

#[test]
fn bad_arguments_are_refused_with_what_is_wrong() {
    let root = workspace();
    let cases: [(&str, &[&str], &str); 6] = [
        (
            "bench-table.sh",
            &["--only", "create,nonsense"],
            "unknown row 'nonsense'",
        ),
        (
            "bench-table.sh",
            &["--frobnicate"],
            "unknown argument '--frobnicate'",
        ),
        (
            "bench-table.sh",
            &["--out", "table.txt"],
            "--out must name a .json file",
        ),
        (
            "bench-table.sh",
            &["--render", "/nonexistent.json"],
            "no such file",
        ),
        (
            "profile.sh",
            &["--creates", "many"],
            "whole numbers, not 'many'",
        ),
        (
            "profile.sh",
            &["--concurrency", "0"],
            "--concurrency must be 1..64",
        ),
    ];
    for (name, args, expected) in cases {
        let output = script(&root, name).args(args).output().unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert!(stderr.contains(expected), "{name} {args:?}: {stderr}");
    }
    for name in ["bench-table.sh", "profile.sh"] {
        let output = script(&root, name).arg("--help").output().unwrap();
        let (stdout, _) = text(&output);
        assert!(output.status.success());
        assert!(
            stdout.contains("scripts/") && !stdout.contains("#!"),
            "{stdout}"
        );
    }
}

fn summary(create: f64, one_user: f64) -> Value {
    json!({
        "meta": {"commit": "abc1234", "profile": "release"},
        "rows": {
            "create": {"req_s": create, "p50_ms": 7.0, "p99_ms": 25.0},
            "one-user": {"req_s": one_user, "p50_ms": 20.0, "p99_ms": 85.0},
            "half-peak": {"rate": create / 2.0, "req_s": create / 2.0, "p50_ms": 1.5, "p99_ms": 4.5},
            "fastapi": {"req_s": 100.0, "p50_ms": 70.0, "p99_ms": 120.0},
            "probe": {"req_s": 10000.0, "p50_ms": 1.9, "p99_ms": 5.0},
            "system": {"creates_s": 1000.0, "emails_s": 1000.0, "audit_s": 800.0,
                       "e2e_p50_ms": 8.0, "e2e_p99_ms": 30.0},
            "system-half": {"rate": 500.0, "creates_s": 500.0, "emails_s": 500.0,
                            "audit_s": 500.0, "e2e_p50_ms": 4.0, "e2e_p99_ms": 12.0},
        }
    })
}

#[test]
fn the_table_shows_each_goal_with_its_ratio_and_compares_two_runs() {
    let dir = tempfile::tempdir().unwrap();
    let before = dir.path().join("before.json");
    let after = dir.path().join("after.json");
    std::fs::write(&before, summary(2000.0, 500.0).to_string()).unwrap();
    std::fs::write(&after, summary(8000.0, 6000.0).to_string()).unwrap();
    let output = script(&workspace(), "bench-table.sh")
        .arg("--render")
        .arg(&after)
        .arg("--compare")
        .arg(&before)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for line in [
        "| what | result |",
        "| task-api `POST /api/tasks`, 32 users round robin, 32 connections, through `sidecar run -f` | 8,000 req/s, p50 7.00 ms, p99 25.0 ms |",
        "| one user ÷ 32 users (req/s) | 0.75 | ≥ 0.50 | yes |",
        "| task-api ÷ FastAPI (req/s) | 80.0× | ≥ 40× | yes |",
        "| task-api ÷ two-hop limit (req/s) | 0.80 | ≥ 0.70 | yes |",
        "| task-api p99 at half of peak, open loop | 4.50 ms | ≤ 5 ms | yes |",
        "| emails/s ÷ creates/s, flat out, in-memory | 1.00 | ≥ 1.00 | yes |",
        "| audit entries/s ÷ creates/s, flat out, in-memory | 0.80 | ≥ 1.00 | no |",
        "| request→email p99 at half of the creates/s, in-memory | 12.0 ms | ≤ 20 ms | yes |",
        "| task-api, 32 users: req/s | 2,000 | 8,000 | 4.00 |",
        "| one user alone: req/s | 500 | 6,000 | 12.00 |",
        "| one user ÷ 32 users (req/s) (goal ≥ 0.50) | 0.25 | 0.75 | |",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Rows that were not measured are left out, not shown as zero.
    assert!(!stdout.contains("sidecar alone"), "{stdout}");
    assert!(!stdout.contains("Kafka"), "{stdout}");
}

/// Two consecutive free loopback ports (a row's app and sidecar).
fn free_pair() -> u16 {
    for _ in 0..100 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < 65000 && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

#[test]
fn a_quick_run_measures_every_quick_row_over_the_real_binaries() {
    let binaries = Binaries::locate().unwrap();
    let bin_dir = binaries.path("sidecar").parent().unwrap().to_path_buf();
    for extra in ["loadgen", "two-hop-probe"] {
        assert!(
            binaries.path(extra).is_file(),
            "{extra} not built: run `cargo build --workspace --bins` first"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("table.json");
    let output = script(binaries.workspace(), "bench-table.sh")
        .args(["--quick", "--only", "probe,half-peak,sidecar", "--out"])
        .arg(&out)
        .env("PROFILE", "debug")
        .env("NO_BUILD", "1")
        .env("BIN_DIR", &bin_dir)
        .env("BENCH_PORT_BASE", free_pair().to_string())
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // half-peak brings create with it, and the rows keep their fixed order.
    assert!(stderr.contains("create runs too"), "{stderr}");
    let summary: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let rows = summary["rows"].as_object().unwrap();
    let ids: Vec<&str> = rows.keys().map(String::as_str).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for id in ["create", "half-peak", "probe", "sidecar"] {
        let row = &rows[id];
        assert!(row["req_s"].as_f64().unwrap() > 0.0, "{id}: {row}");
        assert_eq!(row["errors"], 0, "{id}: {row}");
    }
    let half = rows["half-peak"]["rate"].as_f64().unwrap();
    let peak = rows["create"]["req_s"].as_f64().unwrap();
    assert!((half - peak / 2.0).abs() < 0.1, "half {half}, peak {peak}");
    assert_eq!(summary["meta"]["quick"], "true");
    let markdown = std::fs::read_to_string(out.with_extension("md")).unwrap();
    assert_eq!(markdown.trim(), stdout.trim());
    let order: Vec<usize> = [
        "32 users round robin",
        "half of the 32-user peak",
        "two-hop limit",
        "sidecar alone",
    ]
    .iter()
    .map(|label| {
        stdout
            .find(label)
            .unwrap_or_else(|| panic!("{label} in {stdout}"))
    })
    .collect();
    assert!(order.is_sorted(), "{stdout}");
    assert!(
        stdout.contains("| task-api ÷ two-hop limit (req/s) |"),
        "{stdout}"
    );
}

/// A callgrind dump of a window opened while a thread's loop was running: that loop's call is
/// written with `calls=0`, and its cost must count as the call's (inclusive), not the caller's own.
const DUMP: &str = "\
# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 910

ob=(1) /bin/app
fl=(1) main.rs
fn=(1) thread_start
0 10
cfl=(2) routes.rs
cfn=(2) task_api::routes::create_task::{{closure}}
calls=0 0
0 900

fl=(2)
fn=(2)
4 300
cfl=(3) ser.rs
cfn=(3) serde_json::ser::to_vec
calls=5 0
+2 600

fl=(3)
fn=(3)
7 600
";

#[test]
fn the_callgrind_report_counts_calls_under_way_as_calls() {
    let dir = tempfile::tempdir().unwrap();
    for process in ["task-api", "email-worker", "audit-logger", "sidecar"] {
        std::fs::write(dir.path().join(format!("{process}.dump")), DUMP).unwrap();
    }
    let output = Command::new("python3")
        .arg(workspace().join("scripts/lib/callgrind_report.py"))
        .arg(dir.path())
        .args(["10", "Ten creates."])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    for line in [
        "| task-api | 910 | 91 per create |",
        "| email-worker | 910 | 91 per email |",
        "| audit-logger | 910 | 91 per create (its entries on the task trail and the user trail) |",
        // Inclusive: the loop, the handler (its own 300 and the 600 it called), the serialiser.
        "| 910 | 100.0 | 91 | `thread_start` |",
        "| 900 | 98.9 | 90 | `task_api::routes::create_task::{{closure}}` |",
        // Self: the loop's own 10, not the 900 of the call under way.
        "| 600 | 65.9 | 60 | `serde_json::ser::to_vec` |",
        "| 10 | 1.1 | 1 | `thread_start` |",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}
