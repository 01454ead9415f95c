//! Config loading for every Tincan binary: one TOML file, then environment overrides.
//!
//! Precedence, lowest first: the type's `Default`, the TOML file, `<PREFIX>SECTION__KEY=value` environment
//! variables (`__` separates nesting levels), and `<PREFIX>SECTION__KEY_FILE=/path` which reads a secret from a
//! file (trailing newline stripped) so secrets stay out of the environment and the config file. Config types use
//! `#[serde(deny_unknown_fields)]`, so a misspelt key is an error naming it, not a silently ignored setting.

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A config section that can check itself beyond what its types express.
pub trait Validate {
    /// Returns every problem found, each naming the key it concerns; empty when the config is usable.
    fn validate(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named with `--config` does not exist or cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A `*_FILE` secret could not be read.
    #[error("cannot read secret file {path} (from {var}): {source}")]
    SecretFile {
        /// The environment variable that named the file.
        var: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The merged config does not fit the config type (unknown key, wrong type, bad TOML).
    #[error("invalid config: {0}")]
    Parse(#[from] Box<figment::Error>),
    /// The config parsed but `validate()` found problems.
    #[error("invalid config:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// Loads `T` from its defaults, an optional TOML file and the environment under `env_prefix`
/// (for example `TINCAN_DIRECTORY_`), then validates it.
pub fn load_config<T>(file: Option<&Path>, env_prefix: &str) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    load_config_from(file, env_prefix, std::env::vars())
}

/// [`load_config`] with the environment passed in (for tests).
pub fn load_config_from<T>(
    file: Option<&Path>,
    env_prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    // Defaults are seeded by value (secrets exposed) so partial sections merge onto them and an unset secret
    // stays empty rather than becoming the `[redacted]` placeholder `Secret` prints.
    let defaults = crate::secret::with_exposed(|| figment::value::Value::serialize(T::default()).map_err(Box::new))?;
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        figment = figment.merge(Toml::string(&text));
    }
    let env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k.starts_with(env_prefix)).collect();
    // Plain overrides: `<PREFIX>A__B=v` sets `a.b`, the value parsed like figment's `Env` (bools, numbers,
    // arrays…). Done by hand rather than with `Env` so that tests can pass the environment in.
    for (var, value) in env.iter().filter(|(k, _)| !k.ends_with("_FILE")) {
        let key = var[env_prefix.len()..].to_ascii_lowercase().replace("__", ".");
        let value: figment::value::Value = value.parse().expect("infallible");
        figment = figment.merge(Serialized::default(&key, value));
    }
    for (var, path) in env.iter().filter(|(k, _)| k.ends_with("_FILE")) {
        let key = var[env_prefix.len()..var.len() - "_FILE".len()].to_ascii_lowercase().replace("__", ".");
        let path = PathBuf::from(path);
        let value = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
            var: var.clone(),
            path: path.clone(),
            source,
        })?;
        figment = figment.merge(Serialized::default(&key, value.trim_end_matches(['\n', '\r'])));
    }
    let config: T = figment.extract().map_err(Box::new)?;
    let problems = config.validate();
    if problems.is_empty() { Ok(config) } else { Err(ConfigError::Invalid(problems)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Api {
        listen: String,
        token: Secret,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Conf {
        name: String,
        api: Api,
    }

    impl Validate for Conf {
        fn validate(&self) -> Vec<String> {
            if self.name == "bad" { vec!["name: must not be \"bad\"".into()] } else { vec![] }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn file_then_env_then_secret_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "name = \"a\"\n[api]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        let secret = dir.path().join("token");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let c: Conf = load_config_from(
            Some(&file),
            "TINCAN_X_",
            env(&[
                ("TINCAN_X_API__LISTEN", "127.0.0.1:2"),
                ("TINCAN_X_API__TOKEN_FILE", secret.to_str().unwrap()),
                ("OTHER", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.api.listen, "127.0.0.1:2");
        assert_eq!(c.api.token.expose(), "s3cret");
    }

    #[test]
    fn unset_secrets_stay_empty_and_defaults_keep_their_value() {
        #[derive(Debug, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        struct WithDefault {
            token: Secret,
            other: Secret,
        }
        impl Default for WithDefault {
            fn default() -> Self {
                Self { token: Secret::new("built-in"), other: Secret::default() }
            }
        }
        impl Validate for WithDefault {}
        let c: WithDefault = load_config_from(None, "T_", env(&[])).unwrap();
        assert_eq!(c.token.expose(), "built-in");
        assert!(c.other.is_empty(), "an unset secret must not read back as the [redacted] placeholder");
        // Printing still redacts.
        assert_eq!(serde_json::to_string(&c.token).unwrap(), "\"[redacted]\"");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "nmae = \"typo\"\n").unwrap();
        let err = load_config_from::<Conf>(Some(&file), "T_", env(&[])).unwrap_err();
        assert!(err.to_string().contains("nmae"), "{err}");
        let err = load_config_from::<Conf>(None, "T_", env(&[("T_API__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn validation_problems_are_reported() {
        let err = load_config_from::<Conf>(None, "T_", env(&[("T_NAME", "bad")])).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(ref p) if p.len() == 1), "{err}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = load_config_from::<Conf>(Some(Path::new("/nonexistent/x.toml")), "T_", env(&[])).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }
}
