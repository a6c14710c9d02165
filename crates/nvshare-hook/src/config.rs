//! The hook's configuration, read from the environment once.
//!
//! Parsing never fails the program: an invalid value is logged and the
//! default used, because a typo in an environment variable must not break a
//! training job that would run fine unshared.
//!
//! A leaf: the engines and the gate are given what they need from here when
//! they are made; nothing here knows them.

use nvshare_proto::env;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::OnceLock;

/// How device allocations are backed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMode {
    /// VMM handles swapped to host memory in bulk (the default).
    Swap,
    /// Managed memory, prefetched on grant (the original nvshare's way).
    Uvm,
}

/// Whether the hook talks to a scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerMode {
    /// Connect, starting a per-user scheduler if none answers.
    Auto,
    /// Connect, but never start one.
    NoAutostart,
    /// Run unscheduled (`NVSHARE_SCHEDULER=off`).
    Off,
}

/// Everything the hook reads from the environment.
#[derive(Debug, Clone)]
pub struct HookConfig {
    /// `NVSHARE_MODE`: `swap` (default) or `uvm`.
    pub mode: MemoryMode,
    /// `NVSHARE_SCHEDULER`: `auto` (default), `external` (never start one), `off`.
    pub scheduler: SchedulerMode,
    /// The scheduler socket: `NVSHARE_SOCK`, else the per-user or system default.
    pub socket: PathBuf,
    /// The job name: `NVSHARE_NAME`, else the program's name.
    pub name: String,
    /// The multi-process job this program belongs to: `NVSHARE_GROUP`, else
    /// (under torch.distributed's launchers, `WORLD_SIZE` > 1) the job's
    /// rendezvous address `torch:MASTER_ADDR:MASTER_PORT`; else none.
    pub group: Option<String>,
    /// `NVSHARE_ENABLE_SINGLE_OVERSUB=1`: in uvm mode, allow one program to
    /// allocate beyond the capacity (as the original nvshare).
    pub single_oversub: bool,
    /// `NVSHARE_MEMORY_LIMIT` (a size such as `10GiB`): the most this program
    /// may hold on each GPU, what it sees as the GPU's memory; none by
    /// default (the scheduler's capacity).
    pub memory_limit: Option<u64>,
    /// `NVSHARE_PRIORITY`: higher goes first in the scheduler's line
    /// (default 0, `-1000` to `1000`).
    pub priority: i32,
    /// `NVSHARE_WEIGHT`: the time slice in quanta (default 1, `1` to `100`).
    pub weight: u32,
    /// Milliseconds without GPU work after which a holder reports itself
    /// idle (`NVSHARE_IDLE_MS`, default [`DEFAULT_IDLE_MS`]).
    pub idle_after_ms: u64,
    /// The swap engine's settings.
    pub swap: SwapSettings,
}

/// What the swap engine is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwapSettings {
    /// Bytes per copy command: `NVSHARE_SWAP_CHUNK_MIB` (default
    /// [`DEFAULT_SWAP_CHUNK_MIB`]).
    pub chunk_bytes: u64,
    /// Copy streams per device, 1 to [`MAX_SWAP_STREAMS`]:
    /// `NVSHARE_SWAP_STREAMS` (default [`DEFAULT_SWAP_STREAMS`]).
    pub streams: usize,
    /// The most bytes of one VMM handle, `NVSHARE_SWAP_SEGMENT_MIB`
    /// (default [`DEFAULT_SWAP_SEGMENT_MIB`]): larger allocations are backed
    /// by several handles, which move one by one.
    pub segment_bytes: u64,
    /// A cap on the host memory this process's shadows take:
    /// `NVSHARE_HOST_LIMIT` (a size such as `8GiB`); none by default (the
    /// available memory less a margin).
    pub host_limit: Option<u64>,
}

impl Default for SwapSettings {
    fn default() -> Self {
        SwapSettings {
            chunk_bytes: DEFAULT_SWAP_CHUNK_MIB << 20,
            streams: DEFAULT_SWAP_STREAMS as usize,
            segment_bytes: DEFAULT_SWAP_SEGMENT_MIB << 20,
            host_limit: None,
        }
    }
}

static CONFIG: OnceLock<HookConfig> = OnceLock::new();

/// The configuration, read on first use.
pub fn get() -> &'static HookConfig {
    CONFIG.get_or_init(HookConfig::from_env)
}

impl HookConfig {
    /// Reads the environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mode = match var(env::MODE).as_deref() {
            None | Some("swap") => MemoryMode::Swap,
            Some("uvm") => MemoryMode::Uvm,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "NVSHARE_MODE must be swap or uvm; using swap"
                );
                MemoryMode::Swap
            }
        };
        let scheduler = match var(env::SCHEDULER).as_deref() {
            None | Some("auto") | Some("on") => SchedulerMode::Auto,
            Some("external") => SchedulerMode::NoAutostart,
            Some("off") => SchedulerMode::Off,
            Some(other) => {
                tracing::warn!(
                    value = other,
                    "NVSHARE_SCHEDULER must be auto, external or off; using auto"
                );
                SchedulerMode::Auto
            }
        };
        let socket = nvshare_proto::socket::resolve(var(env::SOCK).map(PathBuf::from));
        let name = var(env::NAME).unwrap_or_else(program_name);
        let group = job_group(&var);
        let single_oversub = var(env::ENABLE_SINGLE_OVERSUB).as_deref() == Some("1");
        let idle_after_ms = var(env::IDLE_MS)
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_IDLE_MS);
        let setting = |name: &'static str, range: RangeInclusive<u64>, default: u64| {
            parse_bounded(name, var(name).as_deref(), range, default).unwrap_or_else(|err| {
                tracing::warn!(%err, default, "invalid {name}; using the default");
                default
            })
        };
        let chunk_mib = setting(
            env::SWAP_CHUNK_MIB,
            SWAP_CHUNK_MIB_RANGE,
            DEFAULT_SWAP_CHUNK_MIB,
        );
        let streams = setting(env::SWAP_STREAMS, SWAP_STREAMS_RANGE, DEFAULT_SWAP_STREAMS);
        let segment_mib = setting(
            env::SWAP_SEGMENT_MIB,
            SWAP_SEGMENT_MIB_RANGE,
            DEFAULT_SWAP_SEGMENT_MIB,
        );
        let size = |name: &str, fallback: &str| {
            let text = var(name)?;
            match nvshare_proto::units::parse_size(&text) {
                Ok(bytes) => Some(bytes),
                Err(_) => {
                    tracing::warn!(
                        value = text,
                        "{name} must be a size such as 8GiB or 512MiB; {fallback}"
                    );
                    None
                }
            }
        };
        let host_limit = size(env::HOST_LIMIT, "using the available memory instead");
        let no_limit = "this program runs WITHOUT a memory limit of its own";
        let memory_limit = size(env::MEMORY_LIMIT, no_limit).filter(|&bytes| {
            if bytes == 0 {
                tracing::warn!(
                    "{} must be more than 0 bytes; {no_limit}",
                    env::MEMORY_LIMIT
                );
            }
            bytes > 0
        });
        let priority = parse_priority(var(env::PRIORITY).as_deref()).unwrap_or_else(|err| {
            tracing::warn!("{err}; using priority {}", nvshare_proto::DEFAULT_PRIORITY);
            nvshare_proto::DEFAULT_PRIORITY
        });
        let weight = setting(
            env::WEIGHT,
            1..=u64::from(nvshare_proto::MAX_WEIGHT),
            u64::from(nvshare_proto::DEFAULT_WEIGHT),
        ) as u32;
        HookConfig {
            mode,
            scheduler,
            socket,
            name,
            group,
            single_oversub,
            memory_limit,
            priority,
            weight,
            idle_after_ms,
            swap: SwapSettings {
                chunk_bytes: chunk_mib << 20,
                // At most MAX_SWAP_STREAMS (the range's end): fits a usize.
                streams: streams as usize,
                segment_bytes: segment_mib << 20,
                host_limit,
            },
        }
    }
}

/// The program's job group from its environment (see [`HookConfig::group`]).
fn job_group(var: &impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(group) = var(env::GROUP) {
        return Some(group);
    }
    let ranks: u64 = var("WORLD_SIZE")?.trim().parse().ok()?;
    if ranks < 2 {
        return None;
    }
    Some(format!(
        "torch:{}:{}",
        var("MASTER_ADDR")?,
        var("MASTER_PORT")?
    ))
}

/// The swap engine's copy chunk in MiB when `NVSHARE_SWAP_CHUNK_MIB` is
/// unset: 12 GiB moved in 64 MiB chunks ran at 51-53 GB/s (DESIGN.md).
pub const DEFAULT_SWAP_CHUNK_MIB: u64 = 64;

/// What `NVSHARE_SWAP_CHUNK_MIB` may be: below 1 MiB the per-copy overhead
/// dominates; above 1 GiB one chunk may hold a whole unit, leaving the
/// other streams idle.
pub const SWAP_CHUNK_MIB_RANGE: RangeInclusive<u64> = 1..=1024;

/// Copy streams per device when `NVSHARE_SWAP_STREAMS` is unset.
pub const DEFAULT_SWAP_STREAMS: u64 = 4;

/// What `NVSHARE_SWAP_STREAMS` may be (streams are kept for the life of
/// the process, so the count is bounded).
pub const SWAP_STREAMS_RANGE: RangeInclusive<u64> = 1..=MAX_SWAP_STREAMS as u64;

/// The most copy streams the swap engine keeps per device.
pub const MAX_SWAP_STREAMS: usize = 8;

/// The default segment size in MiB (`NVSHARE_SWAP_SEGMENT_MIB`): 1 GiB
/// handles cost ~0.2 ms each to create, map and give access to (DESIGN.md:
/// 12 GiB as one handle 1.3 ms, as 64 MiB handles 10.7 ms), and are fine
/// enough that a switch's eviction hands memory to the next program's
/// restore in steps of a twelfth of a 12 GiB working set.
pub const DEFAULT_SWAP_SEGMENT_MIB: u64 = 1024;

/// What `NVSHARE_SWAP_SEGMENT_MIB` may be: from one 2 MiB granule to 1 TiB
/// (one handle per allocation, in effect).
pub const SWAP_SEGMENT_MIB_RANGE: RangeInclusive<u64> = 2..=(1 << 20);

/// Why an environment setting was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// Not a whole number.
    #[error("{name}={value:?} is not a whole number")]
    NotANumber {
        /// The variable.
        name: &'static str,
        /// Its text.
        value: String,
    },
    /// A number outside the allowed range.
    #[error("{name}={value} is outside the allowed range {min}..={max}")]
    OutOfRange {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: u64,
        /// The least allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
}

/// `NVSHARE_PRIORITY`'s value: an integer from `-MAX_PRIORITY` to
/// `MAX_PRIORITY` ([`nvshare_proto::DEFAULT_PRIORITY`] when unset); the
/// error says what is accepted.
pub fn parse_priority(value: Option<&str>) -> Result<i32, String> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(nvshare_proto::DEFAULT_PRIORITY);
    };
    let max = nvshare_proto::MAX_PRIORITY;
    match text.parse::<i32>() {
        Ok(priority) if (-max..=max).contains(&priority) => Ok(priority),
        _ => Err(format!(
            "{}={text:?} is not a priority: give an integer from -{max} to {max} (higher goes first)",
            env::PRIORITY
        )),
    }
}

/// The whole number in `value` (the text of variable `name`, `None` when
/// unset or empty), `default` when unset; an error for text that is not a
/// number or lies outside `range`.
pub fn parse_bounded(
    name: &'static str,
    value: Option<&str>,
    range: RangeInclusive<u64>,
    default: u64,
) -> Result<u64, SettingError> {
    let Some(text) = value.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(default);
    };
    let parsed: u64 = text.parse().map_err(|_| SettingError::NotANumber {
        name,
        value: text.to_owned(),
    })?;
    if range.contains(&parsed) {
        Ok(parsed)
    } else {
        Err(SettingError::OutOfRange {
            name,
            value: parsed,
            min: *range.start(),
            max: *range.end(),
        })
    }
}

/// A holder with no GPU work for this long tells the scheduler it is idle.
pub const DEFAULT_IDLE_MS: u64 = 1000;

fn program_name() -> String {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "NVSHARE_SWAP_STREAMS";

    fn group_of(env: &[(&str, &str)]) -> Option<String> {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        job_group(&var)
    }

    #[test]
    fn priorities_are_integers_within_bounds_and_say_what_is_accepted() {
        assert_eq!(parse_priority(None), Ok(0));
        assert_eq!(parse_priority(Some(" ")), Ok(0));
        assert_eq!(parse_priority(Some("5")), Ok(5));
        assert_eq!(parse_priority(Some("-1000")), Ok(-1000));
        for bad in ["1001", "-1001", "high", "1.5"] {
            let error = parse_priority(Some(bad)).unwrap_err();
            assert!(error.contains("from -1000 to 1000"), "{error}");
        }
    }

    #[test]
    fn the_job_group_is_named_or_taken_from_torch_distributed() {
        assert_eq!(group_of(&[]), None);
        assert_eq!(
            group_of(&[("NVSHARE_GROUP", "train-7")]).as_deref(),
            Some("train-7")
        );
        let torchrun = [
            ("WORLD_SIZE", "4"),
            ("MASTER_ADDR", "10.0.0.1"),
            ("MASTER_PORT", "29500"),
        ];
        assert_eq!(group_of(&torchrun).as_deref(), Some("torch:10.0.0.1:29500"));
        // NVSHARE_GROUP wins; one rank is no group; without the address no
        // group can be derived.
        let mut named = torchrun.to_vec();
        named.push(("NVSHARE_GROUP", "mine"));
        assert_eq!(group_of(&named).as_deref(), Some("mine"));
        assert_eq!(
            group_of(&[
                ("WORLD_SIZE", "1"),
                ("MASTER_ADDR", "a"),
                ("MASTER_PORT", "1")
            ]),
            None
        );
        assert_eq!(group_of(&[("WORLD_SIZE", "2"), ("MASTER_PORT", "1")]), None);
    }

    #[test]
    fn an_unset_or_empty_setting_is_the_default() {
        assert_eq!(parse_bounded(NAME, None, 1..=8, 4), Ok(4));
        assert_eq!(parse_bounded(NAME, Some(""), 1..=8, 4), Ok(4));
        assert_eq!(parse_bounded(NAME, Some("  "), 1..=8, 4), Ok(4));
    }

    #[test]
    fn a_number_in_range_is_taken_including_the_bounds() {
        assert_eq!(parse_bounded(NAME, Some("1"), 1..=8, 4), Ok(1));
        assert_eq!(parse_bounded(NAME, Some(" 3 "), 1..=8, 4), Ok(3));
        assert_eq!(parse_bounded(NAME, Some("8"), 1..=8, 4), Ok(8));
    }

    #[test]
    fn text_and_out_of_range_numbers_are_refused_with_the_name() {
        for text in ["four", "-1", "2.5", "64MiB"] {
            let err = parse_bounded(NAME, Some(text), 1..=8, 4).unwrap_err();
            assert!(matches!(err, SettingError::NotANumber { .. }), "{text}");
            assert!(err.to_string().contains(NAME), "{err}");
        }
        let err = parse_bounded(NAME, Some("9"), 1..=8, 4).unwrap_err();
        assert_eq!(
            err,
            SettingError::OutOfRange {
                name: NAME,
                value: 9,
                min: 1,
                max: 8
            }
        );
        assert_eq!(
            err.to_string(),
            "NVSHARE_SWAP_STREAMS=9 is outside the allowed range 1..=8"
        );
        assert!(matches!(
            parse_bounded(NAME, Some("0"), 1..=8, 4),
            Err(SettingError::OutOfRange { value: 0, .. })
        ));
    }

    #[test]
    fn the_geometry_defaults_lie_in_their_ranges() {
        assert!(SWAP_CHUNK_MIB_RANGE.contains(&DEFAULT_SWAP_CHUNK_MIB));
        assert!(SWAP_STREAMS_RANGE.contains(&DEFAULT_SWAP_STREAMS));
        assert!(SWAP_SEGMENT_MIB_RANGE.contains(&DEFAULT_SWAP_SEGMENT_MIB));
    }
}
