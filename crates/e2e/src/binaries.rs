//! Where the workspace's binaries are: next to the test executable's directory
//! (`target/<profile>/deps/<test>` → `target/<profile>/<bin>`), whatever the target directory.

use std::path::{Path, PathBuf};

/// The binaries a multi-app run of the whole system needs.
pub const REQUIRED: &[&str] = &[
    "sidecar",
    "task-api",
    "email-worker",
    "reminder-scheduler",
    "audit-logger",
];

/// A binary the tests need has not been built.
#[derive(Debug, thiserror::Error)]
#[error(
    "{binary} not found at {path}: run `cargo build --workspace --bins` first \
     (the end-to-end tests run the real binaries; `scripts/test.sh` builds them)"
)]
pub struct MissingBinary {
    pub binary: String,
    pub path: PathBuf,
}

/// The directory holding the binaries, and the repository root.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
    workspace: PathBuf,
}

impl Binaries {
    /// Finds the binaries from the running test executable and checks every required one exists.
    pub fn locate() -> Result<Self, MissingBinary> {
        let exe = std::env::current_exe().unwrap_or_default();
        // target/<profile>/deps/<test-exe>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default();
        Self::in_dir(dir)
    }

    /// Checks the binaries in `dir`.
    pub fn in_dir(dir: PathBuf) -> Result<Self, MissingBinary> {
        let bins = Self {
            dir,
            workspace: PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(".."),
        };
        for name in REQUIRED {
            let path = bins.path(name);
            if !path.is_file() {
                return Err(MissingBinary {
                    binary: (*name).to_owned(),
                    path,
                });
            }
        }
        Ok(bins)
    }

    /// Absolute path of binary `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The repository root (holds `dapr.yaml` and `deploy/`).
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let empty = tempfile::tempdir().unwrap();
        let err = Binaries::in_dir(empty.path().to_path_buf()).unwrap_err();
        assert_eq!(err.binary, "sidecar");
        assert!(
            err.to_string()
                .contains("run `cargo build --workspace --bins` first"),
            "{err}"
        );
    }

    #[test]
    fn complete_directory_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        for name in REQUIRED {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let bins = Binaries::in_dir(dir.path().to_path_buf()).unwrap();
        assert_eq!(bins.path("task-api"), dir.path().join("task-api"));
        assert!(bins.workspace().join("dapr.yaml").is_file());
    }
}
