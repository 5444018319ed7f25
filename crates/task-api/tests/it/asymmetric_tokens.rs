//! RS256 and ES256 tokens verified with a configured PEM public key (test-only key pairs in
//! `tests/fixtures`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use task_api::auth::{Authenticator, issue_token};
use uuid::Uuid;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn claims(user: Uuid) -> serde_json::Value {
    json!({"sub": user.to_string(), "email": "pk@example.com",
           "exp": chrono::Utc::now().timestamp() + 600})
}

#[test]
fn public_key_algorithms_verify_and_reject_other_keys() {
    for (alg, name) in [(Algorithm::ES256, "es256"), (Algorithm::RS256, "rs256")] {
        let alg_name = format!("{alg:?}");
        let public = fixture(&format!("{name}-public.pem"));
        let settings = support::settings(&[
            ("JWT_ALGORITHM", alg_name.as_str()),
            ("JWT_PUBLIC_KEY_FILE", public.as_str()),
        ]);
        let auth = Authenticator::from_settings(&settings).unwrap();
        let private = std::fs::read(fixture(&format!("{name}-private.pem"))).unwrap();
        let key = match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&private).unwrap(),
            _ => EncodingKey::from_rsa_pem(&private).unwrap(),
        };
        let user = Uuid::new_v4();
        let token = jsonwebtoken::encode(&Header::new(alg), &claims(user), &key).unwrap();
        assert_eq!(auth.verify(&token).unwrap().user_id, user, "{alg_name}");

        // An HS256 token signed with the public key's bytes (algorithm confusion) is refused.
        let public_bytes = std::fs::read(&public).unwrap();
        let confused = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(user),
            &EncodingKey::from_secret(&public_bytes),
        )
        .unwrap();
        assert!(auth.verify(&confused).is_err(), "{alg_name}");

        // The dev token command only signs HS256.
        assert!(issue_token(&settings, user, "pk@example.com", Duration::from_secs(60)).is_err());
    }
}

#[test]
fn a_token_from_another_key_pair_is_refused() {
    let es_public = fixture("es256-public.pem");
    let settings = support::settings(&[
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PUBLIC_KEY_FILE", fixture("rs256-public.pem").as_str()),
    ]);
    let auth = Authenticator::from_settings(&settings).unwrap();
    let es_private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(Uuid::new_v4()),
        &EncodingKey::from_ec_pem(&es_private).unwrap(),
    )
    .unwrap();
    assert!(auth.verify(&token).is_err());
    // A key file of the wrong type fails at start-up with a clear error.
    let wrong = support::settings(&[
        ("JWT_ALGORITHM", "RS256"),
        ("JWT_PUBLIC_KEY_FILE", es_public.as_str()),
    ]);
    let error = Authenticator::from_settings(&wrong)
        .unwrap_err()
        .to_string();
    assert!(error.contains("JWT_PUBLIC_KEY_FILE"), "{error}");
}
