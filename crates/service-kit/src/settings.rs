//! Layered settings: the service's built-in defaults, then an optional file named by
//! `CONFIG_FILE`, then environment variables (highest). Variables are prefix-free because the
//! names that matter are Dapr's own conventions (`APP_PORT`, `DAPR_HTTP_PORT`), and a nested key
//! is spelled with `__` (`SMTP__TIMEOUT`).

use config::{Config, Environment, File, FileFormat};
use serde::de::DeserializeOwned;

/// The environment variable naming an optional settings file (YAML or TOML by extension).
pub const CONFIG_FILE_VAR: &str = "CONFIG_FILE";

/// Settings could not be loaded; the message names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid settings: {0}")]
    Invalid(#[from] config::ConfigError),
    #[error("{var} names `{path}`, which cannot be read: {source}")]
    File {
        var: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Loads settings from `defaults` (TOML), the optional `CONFIG_FILE`, and the process
/// environment.
pub fn load_settings<T: DeserializeOwned>(defaults: &str) -> Result<T, SettingsError> {
    load_settings_from(defaults, std::env::vars())
}

/// Like [`load_settings`], with the environment given explicitly (tests, embedding).
pub fn load_settings_from<T, I>(defaults: &str, env: I) -> Result<T, SettingsError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let mut builder = Config::builder().add_source(File::from_str(defaults, FileFormat::Toml));
    if let Some(path) = env.get(CONFIG_FILE_VAR).filter(|p| !p.is_empty()) {
        // Read it ourselves so a missing file is an error that names the variable.
        std::fs::metadata(path).map_err(|source| SettingsError::File {
            var: CONFIG_FILE_VAR,
            path: path.clone(),
            source,
        })?;
        builder = builder.add_source(File::with_name(path).required(true));
    }
    // Values stay text: typed fields are converted by the deserializer, and a token such as
    // `007` must reach a service as written, not as the number 7.
    let environment = Environment::default()
        .separator("__")
        .source(Some(env.into_iter().collect()));
    Ok(builder.add_source(environment).build()?.try_deserialize()?)
}

/// A service's settings: built-in defaults plus the checks serde cannot express (combinations,
/// minimum lengths). Implementing it gives every service the same `load` / `load_from`, so the
/// layering and the order "parse, then validate" cannot drift between services.
pub trait LayeredSettings: DeserializeOwned {
    /// The built-in defaults, in TOML; every key the service reads should have one here or be
    /// optional, so an unset variable is never a parse error.
    const DEFAULTS_TOML: &'static str;

    /// The service's own error; loading failures convert into it.
    type Error: From<SettingsError>;

    /// Rejects values the service cannot work with; the error names the variable.
    fn validate(&self) -> Result<(), Self::Error>;

    /// Loads and validates the settings from the process environment.
    fn load() -> Result<Self, Self::Error> {
        Self::load_from(std::env::vars())
    }

    /// Loads and validates the settings from an explicit environment (tests, embedding).
    fn load_from<I>(env: I) -> Result<Self, Self::Error>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let settings: Self = load_settings_from(Self::DEFAULTS_TOML, env)?;
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Example {
        app_port: u16,
        mail_from: String,
        smtp: Smtp,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Smtp {
        timeout_secs: u64,
    }

    const DEFAULTS: &str =
        "app_port = 8081\nmail_from = \"todo@localhost\"\n[smtp]\ntimeout_secs = 10\n";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_defaults() {
        let s: Example = load_settings_from(
            DEFAULTS,
            env(&[("APP_PORT", "9000"), ("SMTP__TIMEOUT_SECS", "3")]),
        )
        .unwrap();
        assert_eq!(s.app_port, 9000);
        assert_eq!(s.smtp.timeout_secs, 3);
        assert_eq!(s.mail_from, "todo@localhost");
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let err = load_settings_from::<Example, _>(DEFAULTS, env(&[("APP_PORT", "eighty")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("app_port"), "{err}");
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("service-kit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("settings.toml");
        std::fs::write(&file, "app_port = 7000\nmail_from = \"file@localhost\"\n").unwrap();
        let path = file.to_string_lossy().to_string();
        let s: Example = load_settings_from(
            DEFAULTS,
            env(&[("CONFIG_FILE", &path), ("MAIL_FROM", "env@localhost")]),
        )
        .unwrap();
        assert_eq!(s.app_port, 7000);
        assert_eq!(s.mail_from, "env@localhost");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_config_file_is_named() {
        let err = load_settings_from::<Example, _>(
            DEFAULTS,
            env(&[("CONFIG_FILE", "/nonexistent/x.toml")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("CONFIG_FILE") && err.contains("/nonexistent/x.toml"),
            "{err}"
        );
    }

    #[derive(Debug, Deserialize)]
    struct Checked {
        app_port: u16,
    }

    #[derive(Debug, thiserror::Error)]
    enum CheckedError {
        #[error(transparent)]
        Load(#[from] SettingsError),
        #[error("APP_PORT must not be 0")]
        ZeroPort,
    }

    impl LayeredSettings for Checked {
        const DEFAULTS_TOML: &'static str = "app_port = 8081\n";
        type Error = CheckedError;

        fn validate(&self) -> Result<(), CheckedError> {
            if self.app_port == 0 {
                return Err(CheckedError::ZeroPort);
            }
            Ok(())
        }
    }

    #[test]
    fn layered_settings_parse_then_validate() {
        assert_eq!(Checked::load_from(env(&[])).unwrap().app_port, 8081);
        let zero = Checked::load_from(env(&[("APP_PORT", "0")]));
        assert!(matches!(zero, Err(CheckedError::ZeroPort)), "{zero:?}");
        let garbage = Checked::load_from(env(&[("APP_PORT", "eighty")]));
        assert!(matches!(garbage, Err(CheckedError::Load(_))), "{garbage:?}");
    }
}
