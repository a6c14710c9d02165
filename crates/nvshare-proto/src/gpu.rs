//! The identity of one physical GPU.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A GPU's 16-byte UUID, as `cuDeviceGetUuid` returns it. Each UUID is one
/// scheduling domain in the scheduler.
///
/// Displays the way `nvidia-smi -L` does: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
pub struct GpuUuid(pub [u8; 16]);

impl fmt::Display for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(f, "GPU-")?;
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                write!(f, "-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Failure to parse a GPU UUID string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid GPU UUID {0:?}: expected GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (32 hex digits)"
)]
pub struct ParseGpuUuidError(pub String);

impl FromStr for GpuUuid {
    type Err = ParseGpuUuidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseGpuUuidError(s.to_owned());
        let hex: Vec<u8> = s
            .strip_prefix("GPU-")
            .unwrap_or(s)
            .bytes()
            .filter(|&c| c != b'-')
            .collect();
        if hex.len() != 32 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| err())?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| err())?;
        }
        Ok(GpuUuid(out))
    }
}

/// Which GPU an operator's setting is for: a UUID, or the index NVML (and
/// `nvidia-smi`) gives it on this machine.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GpuSelector {
    /// By UUID.
    Uuid(GpuUuid),
    /// By NVML index.
    Index(u32),
}

impl fmt::Display for GpuSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GpuSelector::Uuid(uuid) => write!(f, "{uuid}"),
            GpuSelector::Index(index) => write!(f, "GPU {index}"),
        }
    }
}

impl fmt::Debug for GpuSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Failure to parse a [`GpuSelector`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid GPU {0:?}: give its index (0, 1, ... as nvidia-smi numbers them) or its UUID (GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
)]
pub struct ParseGpuSelectorError(pub String);

impl FromStr for GpuSelector {
    type Err = ParseGpuSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if !text.is_empty() && text.bytes().all(|c| c.is_ascii_digit()) {
            return text
                .parse()
                .map(GpuSelector::Index)
                .map_err(|_| ParseGpuSelectorError(s.to_owned()));
        }
        text.parse()
            .map(GpuSelector::Uuid)
            .map_err(|_| ParseGpuSelectorError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn displays_like_nvidia_smi() {
        let uuid = GpuUuid([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        assert_eq!(uuid.to_string(), "GPU-12345678-9abc-def0-0123-456789abcdef");
    }

    #[test]
    fn rejects_garbage() {
        assert!("GPU-1234".parse::<GpuUuid>().is_err());
        assert!(
            "GPU-zz345678-9abc-def0-0123-456789abcdef"
                .parse::<GpuUuid>()
                .is_err()
        );
    }

    #[test]
    fn selectors_are_indexes_or_uuids() {
        assert_eq!("1".parse(), Ok(GpuSelector::Index(1)));
        assert_eq!(" 12 ".parse(), Ok(GpuSelector::Index(12)));
        let uuid = "GPU-12345678-9abc-def0-0123-456789abcdef";
        assert_eq!(
            uuid.parse(),
            Ok(GpuSelector::Uuid(uuid.parse::<GpuUuid>().unwrap()))
        );
        for bad in ["", "-1", "first", "GPU-12", "99999999999"] {
            let error = bad.parse::<GpuSelector>().unwrap_err();
            assert!(error.to_string().contains("nvidia-smi"), "{error}");
        }
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(bytes in any::<[u8; 16]>()) {
            let uuid = GpuUuid(bytes);
            prop_assert_eq!(uuid.to_string().parse::<GpuUuid>(), Ok(uuid));
        }
    }
}
