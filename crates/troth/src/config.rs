//! `troth serve` configuration, layered: defaults < config file < environment <
//! flags. clap reads each flag and its `TROTH_*` variable (the flag wins); the
//! file fills what both left unset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use troth_core::journey::{JourneyMap, parse_journey};

pub const DEFAULT_DATA_DIR: &str = "./troth-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// An example configuration file, with every option and its default.
pub const EXAMPLE: &str = include_str!("../troth.example.toml");

#[derive(Debug, Clone, clap::Args)]
pub struct ServeFlags {
    /// Configuration file (TOML); see troth.example.toml.
    #[arg(long, env = "TROTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the store lives [default: ./troth-data].
    #[arg(long, env = "TROTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:7878].
    #[arg(long, env = "TROTH_LISTEN")]
    pub listen: Option<String>,
    /// With a master key every /api/v1 route needs `Authorization: Bearer KEY`.
    #[arg(long, env = "TROTH_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Journey map (TOML) whose promises troth follows [default: the built-in retail map].
    #[arg(long, env = "TROTH_JOURNEY")]
    pub journey: Option<PathBuf>,
}

/// What a configuration file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    master_key: Option<String>,
    journey: Option<PathBuf>,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub master_key: Option<String>,
    pub journey: JourneyMap,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field("journey", &self.journey.key)
            .finish()
    }
}

impl Config {
    pub fn load(flags: ServeFlags) -> anyhow::Result<Config> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let listen = flags
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        Ok(Config {
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: parse_listen(&listen)?,
            master_key: flags.master_key.or(file.master_key).filter(|k| !k.is_empty()),
            journey: load_journey(flags.journey.or(file.journey).as_deref())?,
        })
    }
}

/// The journey map troth follows when none is configured.
pub const DEFAULT_JOURNEY: &str = include_str!("../../../journeys/retail.toml");

/// Reads and checks a journey map file, or the built-in one.
pub fn load_journey(path: Option<&Path>) -> anyhow::Result<JourneyMap> {
    let (text, origin) = match path {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading the journey map {}", path.display()))?,
            path.display().to_string(),
        ),
        None => (DEFAULT_JOURNEY.to_owned(), "the built-in retail journey".to_owned()),
    };
    parse_journey(&text).map_err(|errors| {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| format!("{origin}:{}: {}: {}", e.line, e.field, e.message))
            .collect();
        anyhow::anyhow!(
            "the journey map has errors (see troth check-journey):\n{}",
            lines.join("\n")
        )
    })
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the configuration file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the configuration file {}", path.display()))
}

/// `HOST:PORT`, where HOST may be `localhost`.
pub fn parse_listen(listen: &str) -> anyhow::Result<SocketAddr> {
    let with_ip = match listen.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => listen.to_owned(),
    };
    with_ip
        .parse()
        .with_context(|| format!("listen address {listen:?} is not IP:PORT, e.g. 127.0.0.1:7878"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(config: Option<PathBuf>) -> ServeFlags {
        ServeFlags {
            config,
            data_dir: None,
            listen: None,
            master_key: None,
            journey: None,
        }
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9000\"\nmaster_key = \"from-file\"\n").unwrap();
        let from_file = Config::load(flags(Some(path.clone()))).unwrap();
        assert_eq!(from_file.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(from_file.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(from_file.master_key.as_deref(), Some("from-file"));
        let mut flagged = flags(Some(path));
        flagged.listen = Some("localhost:9100".into());
        assert_eq!(Config::load(flagged).unwrap().listen.to_string(), "127.0.0.1:9100");
    }

    #[test]
    fn a_typo_in_the_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let message = format!("{:#}", Config::load(flags(Some(path))).unwrap_err());
        assert!(message.contains("lisen"), "{message}");
    }

    #[test]
    fn a_bad_journey_map_stops_the_start_with_its_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journey.toml");
        std::fs::write(&path, DEFAULT_JOURNEY.replace("stage = \"umot\"", "stage = \"later\"")).unwrap();
        let mut flagged = flags(None);
        flagged.journey = Some(path);
        let message = format!("{:#}", Config::load(flagged).unwrap_err());
        assert!(
            message.contains("journey.toml:") && message.contains("unknown stage \"later\""),
            "{message}"
        );
        assert_eq!(Config::load(flags(None)).unwrap().journey.key, "retail");
    }

    #[test]
    fn the_example_file_parses() {
        let parsed: FileConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed.listen.as_deref(), Some(DEFAULT_LISTEN));
    }
}
