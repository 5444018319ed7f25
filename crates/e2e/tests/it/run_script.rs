//! The run command on a fresh machine: before it builds anything, `scripts/run-local.sh` looks for
//! what the build needs beyond the Rust toolchain (the sidecar links librdkafka, built from source
//! with cmake and C headers) and names what is missing, rather than failing deep inside a build
//! script with "failed to execute command: No such file or directory".

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The first `name` on the system's usual PATH.
fn system_tool(name: &str) -> PathBuf {
    ["/usr/local/bin", "/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("{name} not found in /usr/local/bin, /usr/bin or /bin"))
}

fn executable(path: &Path, body: &str) {
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn run_local_names_a_missing_cmake_before_it_builds() {
    // A PATH with only the tools the script uses before it builds, and no cmake. `id` answers
    // as an ordinary user, so nothing is installed; `cargo` records that it was called.
    let bin = std::env::temp_dir().join(format!("run-local-no-cmake-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).unwrap();
    for tool in ["awk", "dirname"] {
        std::os::unix::fs::symlink(system_tool(tool), bin.join(tool)).unwrap();
    }
    executable(&bin.join("id"), "#!/bin/sh\necho 1000\n");
    let called = bin.join("cargo-was-called");
    executable(
        &bin.join("cargo"),
        &format!("#!/bin/sh\n: > '{}'\nexit 101\n", called.display()),
    );

    let output = Command::new(system_tool("bash"))
        .arg(workspace().join("scripts/run-local.sh"))
        .current_dir(workspace())
        .env("PATH", &bin)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let was_called = called.exists();
    let _ = std::fs::remove_dir_all(&bin);

    assert!(
        !was_called,
        "cargo ran although cmake is missing; stderr: {stderr}"
    );
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("cmake is required to build librdkafka")
            && stderr.contains("apt-get install cmake"),
        "the missing tool and how to install it are named: {stderr}"
    );
}
