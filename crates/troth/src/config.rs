//! `troth serve` configuration, layered: defaults < config file < environment <
//! flags. clap reads each flag and its `TROTH_*` variable (the flag wins); the
//! file fills what both left unset.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use troth_core::calendar::{Calendar, DEFAULT_HOURS};
use troth_core::case::{ServiceLevels, Targets};
use troth_core::journey::{JourneyMap, parse_journey};
use troth_core::segment::EventMap;
use troth_http::tracking::{TrackingConfig, Zone};
use troth_notify::{CaFile, NotifyConfig, SmsConfig, SmtpConfig, Template};
use troth_store::RetryPolicy;

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
    /// A second address for GPS apps speaking OsmAnd (Traccar Client), like Traccar's port 5055 [default: none].
    #[arg(long, env = "TROTH_OSMAND_LISTEN")]
    pub osmand_listen: Option<String>,
    /// How long a read given `min_position` waits for the projections before it
    /// answers 503 `projection_lagging`, in milliseconds [default: 10000].
    #[arg(long, env = "TROTH_READ_WAIT_MS")]
    pub read_wait_ms: Option<u64>,
    #[command(flatten)]
    pub notify: NotifyFlags,
    #[command(flatten)]
    pub tracking: TrackingFlags,
}

/// The customer's tracking page (the `[tracking]` section of the file; docs/tracking.md).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingFlags {
    /// The retailer's name on the tracking page.
    #[arg(long = "tracking-name", env = "TROTH_TRACKING_NAME")]
    pub name: Option<String>,
    /// The retailer's logo (an image URL) on the tracking page.
    #[arg(long = "tracking-logo-url", env = "TROTH_TRACKING_LOGO_URL")]
    pub logo_url: Option<String>,
    /// The retailer's colour on the tracking page, #rrggbb.
    #[arg(long = "tracking-colour", env = "TROTH_TRACKING_COLOUR")]
    pub colour: Option<String>,
    /// Map tiles for the tracking page, e.g. https://tile.example/{z}/{x}/{y}.png; without it the map has no tiles.
    #[arg(long = "tracking-tile-url", env = "TROTH_TRACKING_TILE_URL")]
    pub tile_url: Option<String>,
    /// The attribution the tile provider requires; "© OpenStreetMap contributors" unless set.
    #[arg(long = "tracking-tile-attribution", env = "TROTH_TRACKING_TILE_ATTRIBUTION")]
    pub tile_attribution: Option<String>,
    /// Where the attribution links to (for OpenStreetMap's, its copyright page).
    #[arg(long = "tracking-tile-attribution-url", env = "TROTH_TRACKING_TILE_ATTRIBUTION_URL")]
    pub tile_attribution_url: Option<String>,
    /// The time zone for customers whose own (traits.timezone) is not known, an IANA name such as Europe/London; UTC unless set.
    #[arg(long = "tracking-timezone", env = "TROTH_TRACKING_TIMEZONE")]
    pub timezone: Option<String>,
}

/// Outbound messages (the `[notify]` section of the file).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NotifyFlags {
    /// SMTP server for email: smtp://HOST[:PORT] (plain, a trusted relay),
    /// smtp://USER:PASSWORD@HOST[:587]?tls=required (STARTTLS) or
    /// smtps://USER:PASSWORD@HOST[:465]; without it email waits in the outbox.
    #[arg(long, env = "TROTH_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// Sender address of email [default: troth@localhost].
    #[arg(long, env = "TROTH_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// SMS gateway URL (http:// or https://); without it SMS waits in the outbox.
    #[arg(long, env = "TROTH_SMS_URL")]
    pub sms_url: Option<String>,
    /// Bearer token for the SMS gateway.
    #[arg(long, env = "TROTH_SMS_TOKEN", hide_env_values = true)]
    pub sms_token: Option<String>,
    /// Secret that signs webhooks; without it webhooks wait in the outbox.
    #[arg(long, env = "TROTH_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// CA certificates (PEM) trusted besides the system's on every outbound TLS
    /// connection (SMTP, the SMS gateway, webhooks).
    #[arg(long, env = "TROTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Wait after the first failed send, doubled after each [default: 30].
    #[arg(long, env = "TROTH_NOTIFY_RETRY_BASE_SECONDS")]
    pub notify_retry_base_seconds: Option<u64>,
    /// Longest wait between attempts [default: 3600].
    #[arg(long, env = "TROTH_NOTIFY_RETRY_MAX_SECONDS")]
    pub notify_retry_max_seconds: Option<u64>,
    /// Failed attempts before a message is a dead letter [default: 8].
    #[arg(long, env = "TROTH_NOTIFY_MAX_ATTEMPTS")]
    pub notify_max_attempts: Option<u32>,
    /// Where customers reach troth, e.g. https://track.shop.example: messages link to
    /// tracking pages under it; without it they carry no link.
    #[arg(long, env = "TROTH_PUBLIC_URL")]
    pub public_url: Option<String>,
}

/// What a configuration file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    master_key: Option<String>,
    journey: Option<PathBuf>,
    osmand_listen: Option<String>,
    read_wait_ms: Option<u64>,
    #[serde(default)]
    notify: FileNotify,
    #[serde(default)]
    tracking: TrackingFlags,
    #[serde(default)]
    service: FileService,
    #[serde(default)]
    segment: FileSegment,
}

/// Segment's API (the `[segment]` section; docs/segment.md). File only: a table
/// does not fit a flag.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSegment {
    /// `track` event name → troth type, over the built-in ones.
    #[serde(default)]
    events: std::collections::BTreeMap<String, String>,
}

/// Cases' service levels and the teams' calendars (the `[service]` section; docs/service.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    /// The calendar's zone; the retailer's (`[tracking] timezone`) unless set.
    timezone: Option<String>,
    /// Opening hours, e.g. "Mon-Fri 09:00-18:00, Sat 10:00-13:00".
    hours: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
    first_response_hours: Option<f64>,
    resolution_hours: Option<f64>,
    #[serde(default)]
    categories: std::collections::BTreeMap<String, FileTargets>,
    #[serde(default)]
    teams: std::collections::BTreeMap<String, FileCalendar>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTargets {
    first_response_hours: Option<f64>,
    resolution_hours: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCalendar {
    timezone: Option<String>,
    hours: Option<String>,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNotify {
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    sms_url: Option<String>,
    sms_token: Option<String>,
    webhook_secret: Option<String>,
    ca_file: Option<PathBuf>,
    retry_base_seconds: Option<u64>,
    retry_max_seconds: Option<u64>,
    max_attempts: Option<u32>,
    public_url: Option<String>,
    #[serde(default)]
    templates: HashMap<String, Template>,
}

#[derive(Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub master_key: Option<String>,
    pub journey: JourneyMap,
    /// Where `journey` was read from; `troth serve` reloads it when it changes.
    pub journey_file: Option<PathBuf>,
    /// Where GPS apps may also report positions (OsmAnd at `/`), besides `/osmand` on `listen`.
    pub osmand_listen: Option<SocketAddr>,
    /// How long a read given `min_position` may wait for the projections.
    pub read_wait: std::time::Duration,
    pub notify: NotifyConfig,
    pub tracking: TrackingConfig,
    pub service: ServiceLevels,
    /// Which troth type each Segment `track` event name becomes.
    pub segment_events: EventMap,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("master_key", &self.master_key.as_ref().map(|_| "<set>"))
            .field("journey", &self.journey.key)
            .field("osmand_listen", &self.osmand_listen)
            .field("notify", &self.notify)
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
        let journey_file = flags.journey.or(file.journey);
        let tracking = tracking_config(flags.tracking, file.tracking)?;
        Ok(Config {
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            listen: parse_listen(&listen)?,
            master_key: flags.master_key.or(file.master_key).filter(|k| !k.is_empty()),
            journey: load_journey(journey_file.as_deref())?,
            journey_file,
            osmand_listen: flags
                .osmand_listen
                .or(file.osmand_listen)
                .filter(|l| !l.is_empty())
                .map(|l| parse_listen(&l))
                .transpose()?,
            read_wait: flags
                .read_wait_ms
                .or(file.read_wait_ms)
                .map(std::time::Duration::from_millis)
                .unwrap_or(troth_http::consistency::WAIT_LIMIT),
            notify: notify_config(flags.notify, file.notify)?,
            service: service_levels(file.service, Some(tracking.timezone.name()))?,
            segment_events: EventMap::default()
                .with_overrides(file.segment.events.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .context("in [segment.events]")?,
            tracking,
        }
        .with_message_zone()
        .with_service_in_journey())
    }
}

impl Config {
    /// The promise engine falls cases' service-level promises due by the same
    /// levels the cases API reads.
    fn with_service_in_journey(mut self) -> Config {
        self.journey.service = self.service.clone();
        self
    }

    /// Messages read times in the customer's zone, else the retailer's, as the
    /// tracking page does.
    fn with_message_zone(mut self) -> Config {
        self.notify.timezone = Some(self.tracking.timezone.name().to_owned());
        self
    }
}

/// The `[service]` section as service levels; errors name the setting
/// (`service.teams.billing.hours: …`). Calendars are in `retailer_zone` unless they say.
/// Teams working the default hours in the retailer's zone, with the default targets.
pub fn default_service(retailer_zone: &str) -> ServiceLevels {
    ServiceLevels {
        calendar: Calendar::new(retailer_zone, troth_core::calendar::DEFAULT_HOURS, &[]).unwrap_or_default(),
        ..Default::default()
    }
}

fn service_levels(file: FileService, retailer_zone: Option<&str>) -> anyhow::Result<ServiceLevels> {
    let defaults = ServiceLevels::default();
    let zone = file.timezone.as_deref().or(retailer_zone).unwrap_or("UTC");
    let hours = file.hours.as_deref().unwrap_or(DEFAULT_HOURS);
    let calendar = Calendar::new(zone, hours, &file.holidays).map_err(|e| anyhow::anyhow!("service.{e}"))?;
    let business = |name: &str, value: Option<f64>| -> anyhow::Result<Option<i64>> {
        match value {
            None => Ok(None),
            Some(h) if h.is_finite() && h > 0.0 && h <= 10_000.0 => Ok(Some((h * 3_600_000_000.0) as i64)),
            Some(h) => anyhow::bail!("{name}: {h} is not a number of business hours between 0 and 10,000"),
        }
    };
    let mut teams = std::collections::BTreeMap::new();
    for (team, own) in file.teams {
        let zone = own.timezone.as_deref().unwrap_or(zone);
        let holidays = if own.holidays.is_empty() {
            &file.holidays
        } else {
            &own.holidays
        };
        let calendar = Calendar::new(zone, own.hours.as_deref().unwrap_or(hours), holidays)
            .map_err(|e| anyhow::anyhow!("service.teams.{team}.{e}"))?;
        teams.insert(team, calendar);
    }
    let mut categories = std::collections::BTreeMap::new();
    for (category, targets) in file.categories {
        let prefix = format!("service.categories.{category}");
        categories.insert(
            category,
            Targets {
                first_response_us: business(&format!("{prefix}.first_response_hours"), targets.first_response_hours)?,
                resolution_us: business(&format!("{prefix}.resolution_hours"), targets.resolution_hours)?,
            },
        );
    }
    Ok(ServiceLevels {
        calendar,
        teams,
        first_response_us: business("service.first_response_hours", file.first_response_hours)?
            .unwrap_or(defaults.first_response_us),
        resolution_us: business("service.resolution_hours", file.resolution_hours)?.unwrap_or(defaults.resolution_us),
        categories,
    })
}

fn tracking_config(flags: TrackingFlags, file: TrackingFlags) -> anyhow::Result<TrackingConfig> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let colour = nonempty(flags.colour.or(file.colour));
    if let Some(c) = &colour
        && !(c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        anyhow::bail!("tracking colour {c:?} must be #rrggbb, e.g. #2456d6");
    }
    let tile_url = nonempty(flags.tile_url.or(file.tile_url));
    if let Some(url) = &tile_url
        && !(["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p)) && url.starts_with("http"))
    {
        anyhow::bail!("tracking tile_url {url:?} must be an http(s) URL with {{z}}, {{x}} and {{y}}");
    }
    // The page's Content-Security-Policy allows images from the tiles' one origin.
    if let Some(url) = &tile_url
        && troth_http::tracking::tile_origin(url).is_none()
    {
        anyhow::bail!(
            "tracking tile_url {url:?} must name one server (https://host[:port]/…): {{s}} subdomains are not supported"
        );
    }
    let tile_attribution_url = nonempty(flags.tile_attribution_url.or(file.tile_attribution_url));
    if let Some(url) = &tile_attribution_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        anyhow::bail!("tracking tile_attribution_url {url:?} must be an http(s) URL");
    }
    let timezone = match nonempty(flags.timezone.or(file.timezone)) {
        Some(name) => Zone::named(&name).ok_or_else(|| {
            anyhow::anyhow!("tracking timezone {name:?} is not a time zone; use an IANA name such as Europe/London")
        })?,
        None => Zone::utc(),
    };
    Ok(TrackingConfig {
        timezone,
        name: nonempty(flags.name.or(file.name)),
        logo_url: nonempty(flags.logo_url.or(file.logo_url)),
        colour,
        tile_url,
        tile_attribution: nonempty(flags.tile_attribution.or(file.tile_attribution)),
        tile_attribution_url,
        // The server puts uploads beside the store (data_dir/uploads).
        upload_dir: None,
    })
}

fn notify_config(flags: NotifyFlags, file: FileNotify) -> anyhow::Result<NotifyConfig> {
    let defaults = RetryPolicy::default();
    let retry = RetryPolicy {
        base_seconds: flags
            .notify_retry_base_seconds
            .or(file.retry_base_seconds)
            .unwrap_or(defaults.base_seconds),
        max_seconds: flags
            .notify_retry_max_seconds
            .or(file.retry_max_seconds)
            .unwrap_or(defaults.max_seconds),
        max_attempts: flags
            .notify_max_attempts
            .or(file.max_attempts)
            .unwrap_or(defaults.max_attempts),
    };
    if retry.max_attempts == 0 {
        anyhow::bail!("notify max_attempts must be at least 1");
    }
    let from = flags
        .smtp_from
        .or(file.smtp_from)
        .unwrap_or_else(|| "troth@localhost".to_owned());
    let smtp = flags
        .smtp_url
        .or(file.smtp_url)
        .filter(|u| !u.is_empty())
        .map(|url| SmtpConfig::from_url(&url, &from))
        .transpose()?;
    let sms = flags
        .sms_url
        .or(file.sms_url)
        .filter(|u| !u.is_empty())
        .map(|url| SmsConfig {
            url,
            token: flags.sms_token.or(file.sms_token).filter(|t| !t.is_empty()),
        });
    if let Some(sms) = &sms {
        troth_notify::http::check_url(&sms.url).context("sms_url")?;
    }
    let ca_file = flags
        .ca_file
        .or(file.ca_file)
        .filter(|p| !p.as_os_str().is_empty())
        .map(|path| CaFile::read(&path))
        .transpose()?;
    let public_url = flags.public_url.or(file.public_url).filter(|u| !u.is_empty());
    if let Some(url) = &public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        anyhow::bail!("public_url {url:?} must be an http(s) URL, e.g. https://track.shop.example");
    }
    let mut templates = troth_notify::template::defaults();
    templates.extend(file.templates);
    Ok(NotifyConfig {
        smtp,
        sms,
        ca_file,
        webhook_secret: flags.webhook_secret.or(file.webhook_secret).filter(|s| !s.is_empty()),
        retry,
        templates,
        public_url,
        ..NotifyConfig::default()
    })
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
    use troth_notify::Security;

    fn flags(config: Option<PathBuf>) -> ServeFlags {
        ServeFlags {
            config,
            data_dir: None,
            listen: None,
            master_key: None,
            journey: None,
            osmand_listen: None,
            read_wait_ms: None,
            notify: NotifyFlags::default(),
            tracking: TrackingFlags::default(),
        }
    }

    #[test]
    fn the_read_wait_layers_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(&path, "read_wait_ms = 250\n").unwrap();
        assert_eq!(
            Config::load(flags(None)).unwrap().read_wait,
            troth_http::consistency::WAIT_LIMIT
        );
        assert_eq!(
            Config::load(flags(Some(path.clone()))).unwrap().read_wait,
            std::time::Duration::from_millis(250)
        );
        let mut flagged = flags(Some(path));
        flagged.read_wait_ms = Some(40);
        assert_eq!(
            Config::load(flagged).unwrap().read_wait,
            std::time::Duration::from_millis(40)
        );
    }

    #[test]
    fn tracking_settings_layer_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(
            &path,
            "[tracking]\nname = \"Shop\"\ncolour = \"#112233\"\ntile_url = \"https://t.example/{z}/{x}/{y}.png\"\ntimezone = \"Europe/London\"\n",
        )
        .unwrap();
        let mut flagged = flags(Some(path.clone()));
        flagged.tracking.name = Some("Flagged".into());
        let tracking = Config::load(flagged).unwrap().tracking;
        assert_eq!(tracking.name.as_deref(), Some("Flagged"));
        assert_eq!(tracking.colour.as_deref(), Some("#112233"));
        assert!(tracking.tile_url.is_some());
        assert_eq!(tracking.tile_attribution, None, "OpenStreetMap's, by the page");
        let mut subdomains = flags(Some(path.clone()));
        subdomains.tracking.tile_url = Some("https://{s}.tile.example/{z}/{x}/{y}.png".into());
        assert!(format!("{:#}", Config::load(subdomains).unwrap_err()).contains("one server"));
        assert_eq!(tracking.timezone.name(), "Europe/London");
        let mut zoned = flags(Some(path.clone()));
        zoned.tracking.timezone = Some("Europe/Nowhere".into());
        assert!(format!("{:#}", Config::load(zoned).unwrap_err()).contains("IANA name"));
        assert_eq!(Config::load(flags(None)).unwrap().tracking.timezone.name(), "UTC");
        let mut bad = flags(Some(path));
        bad.tracking.colour = Some("red".into());
        assert!(format!("{:#}", Config::load(bad).unwrap_err()).contains("#rrggbb"));
    }

    #[test]
    fn service_levels_take_the_retailers_zone_and_name_a_bad_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(
            &path,
            "[tracking]\ntimezone = \"Europe/Paris\"\n[service]\nhours = \"Mon-Fri 09:00-18:00\"\nfirst_response_hours = 2\n\
             [service.categories.refund]\nresolution_hours = 8\n[service.teams.billing]\ntimezone = \"Europe/London\"\n",
        )
        .unwrap();
        let service = Config::load(flags(Some(path))).unwrap().service;
        assert_eq!(service.calendar.zone_name(), "Europe/Paris");
        assert_eq!(service.calendar("billing").zone_name(), "Europe/London");
        assert_eq!(service.first_response_us, 2 * 3_600_000_000);
        assert_eq!(service.resolution_us, 16 * 3_600_000_000, "the default");
        assert_eq!(service.categories["refund"].resolution_us, Some(8 * 3_600_000_000));
        // Friday 17:50 in Paris, two business hours: Monday 10:50.
        let friday = troth_core::Timestamp::parse("2026-11-27T16:50:00Z").unwrap();
        assert_eq!(
            service.calendar.add(friday, service.first_response_us).to_string(),
            "2026-11-30T09:50:00.000000Z"
        );

        for (section, named) in [
            ("[service]\nhours = \"Mon-Fri 9-17\"\n", "service.hours"),
            (
                "[service.teams.billing]\nholidays = [\"soon\"]\n",
                "service.teams.billing.holidays[0]",
            ),
            (
                "[service.categories.refund]\nresolution_hours = -1\n",
                "service.categories.refund.resolution_hours",
            ),
        ] {
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, section).unwrap();
            let error = format!("{:#}", Config::load(flags(Some(path))).unwrap_err());
            assert!(error.contains(named), "{error}");
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
    fn the_osmand_port_layers_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(&path, "osmand_listen = \"0.0.0.0:5055\"\n").unwrap();
        assert_eq!(Config::load(flags(None)).unwrap().osmand_listen, None);
        let from_file = Config::load(flags(Some(path.clone()))).unwrap();
        assert_eq!(
            from_file.osmand_listen.map(|a| a.to_string()).as_deref(),
            Some("0.0.0.0:5055")
        );
        let mut flagged = flags(Some(path));
        flagged.osmand_listen = Some("localhost:5056".into());
        assert_eq!(
            Config::load(flagged).unwrap().osmand_listen.map(|a| a.port()),
            Some(5056)
        );
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
    fn notify_settings_layer_like_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(
            &path,
            "[notify]\nsmtp_url = \"smtp://mail.local\"\nsmtp_from = \"cx@shop.example\"\nmax_attempts = 3\n\
             public_url = \"https://track.shop.example/\"\nsms_url = \"https://sms.example/send\"\n\
             [notify.templates.payment-failed]\nsubject = \"Oops\"\nbody = \"Hi {customer.traits.name}\"\n",
        )
        .unwrap();
        let mut flagged = flags(Some(path.clone()));
        flagged.notify.smtp_url = Some("smtp://troth:s3cret@mail.example?tls=required".into());
        let notify = Config::load(flagged).unwrap().notify;
        let smtp = notify.smtp.as_ref().unwrap();
        assert_eq!(
            (smtp.host.as_str(), smtp.port, smtp.security, smtp.from.as_str()),
            ("mail.example", 587, Security::StartTls, "cx@shop.example")
        );
        assert_eq!(smtp.credentials, Some(("troth".into(), "s3cret".into())));
        assert!(!format!("{notify:?}").contains("s3cret"), "{notify:?}");
        assert_eq!((notify.retry.max_attempts, notify.retry.base_seconds), (3, 30));
        assert_eq!(notify.templates["payment-failed"].subject, "Oops");
        assert!(notify.templates.contains_key("window-missed"));
        assert_eq!(notify.sms.unwrap().url, "https://sms.example/send");
        assert_eq!(notify.public_url.as_deref(), Some("https://track.shop.example/"));
        assert_eq!(Config::load(flags(Some(path))).unwrap().notify.smtp.unwrap().port, 25);
    }

    #[test]
    fn notify_settings_that_cannot_work_stop_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let refused = |change: &dyn Fn(&mut NotifyFlags)| {
            let mut flagged = flags(None);
            change(&mut flagged.notify);
            format!("{:#}", Config::load(flagged).unwrap_err())
        };
        let error = refused(&|n| n.smtp_url = Some("smtp://troth:s3cret@mail.example".into()));
        assert!(error.contains("without TLS") && !error.contains("s3cret"), "{error}");
        let error = refused(&|n| n.sms_url = Some("ftp://sms.example".into()));
        assert!(error.contains("sms_url") && error.contains("https://"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = refused(&|n| n.ca_file = Some(missing.clone()));
        assert!(error.contains("ca_file") && error.contains("missing.pem"), "{error}");
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let error = refused(&|n| n.ca_file = Some(not_pem.clone()));
        assert!(error.contains("no PEM certificate"), "{error}");

        let old = dir.path().join("old.toml");
        std::fs::write(&old, "[notify]\nsmtp_host = \"mail.local\"\n").unwrap();
        let error = format!("{:#}", Config::load(flags(Some(old))).unwrap_err());
        assert!(error.contains("smtp_host") && error.contains("smtp_url"), "{error}");
    }

    #[test]
    fn segment_event_names_map_over_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("troth.toml");
        std::fs::write(
            &path,
            "[segment.events]\n\"Purchase\" = \"order.placed\"\n\"Order Completed\" = \"x.shop.completed\"\n",
        )
        .unwrap();
        let events = Config::load(flags(Some(path.clone()))).unwrap().segment_events;
        assert_eq!(events.event_type("Purchase"), "order.placed");
        assert_eq!(events.event_type("Order Completed"), "x.shop.completed");
        assert_eq!(events.event_type("Order Refunded"), "refund.issued");
        assert_eq!(
            Config::load(flags(None))
                .unwrap()
                .segment_events
                .event_type("Order Completed"),
            "order.placed"
        );
        std::fs::write(&path, "[segment.events]\n\"Signed Up\" = \"signup\"\n").unwrap();
        let message = format!("{:#}", Config::load(flags(Some(path))).unwrap_err());
        assert!(
            message.contains("[segment.events]") && message.contains("\"signup\""),
            "{message}"
        );
    }

    #[test]
    fn the_example_file_parses() {
        let parsed: FileConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(parsed.listen.as_deref(), Some(DEFAULT_LISTEN));
    }
}
