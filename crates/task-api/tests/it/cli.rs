//! `task-api token`: prints a token the service accepts; refuses without an HS256 secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::process::Command;

use task_api::auth::Authenticator;

const USER: &str = "0b7c6a4e-0000-4000-8000-000000000001";

#[test]
fn token_command_prints_a_verifiable_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("JWT_SECRET", support::SECRET)
        .args([
            "token",
            "--user-id",
            USER,
            "--email",
            "me@example.com",
            "--ttl",
            "2h",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let token = String::from_utf8(output.stdout).unwrap();
    let auth = Authenticator::from_settings(&support::settings(&[])).unwrap();
    let user = auth.verify(token.trim()).unwrap();
    assert_eq!(user.user_id.to_string(), USER);
    assert_eq!(user.email, "me@example.com");
}

#[test]
fn token_command_refuses_without_a_secret_or_with_a_bad_email() {
    let no_secret = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .args(["token", "--user-id", USER, "--email", "me@example.com"])
        .output()
        .unwrap();
    assert!(!no_secret.status.success());
    assert!(no_secret.stdout.is_empty());
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("JWT_SECRET"));
    let bad_email = Command::new(env!("CARGO_BIN_EXE_task-api"))
        .env_clear()
        .env("JWT_SECRET", support::SECRET)
        .args(["token", "--user-id", USER, "--email", "nope"])
        .output()
        .unwrap();
    assert!(!bad_email.status.success());
    assert!(bad_email.stdout.is_empty());
}
