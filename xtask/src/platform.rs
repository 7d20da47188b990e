//! `Platform`: an OS/architecture pair in the container world's spelling
//! (`linux/amd64`), limited to the ones Stigmer ships.

use std::{fmt, str::FromStr};

use anyhow::bail;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Platform {
    LinuxAmd64,
    LinuxArm64,
}

impl Platform {
    /// What a release publishes, in index order.
    pub(crate) const ALL: [Platform; 2] = [Platform::LinuxAmd64, Platform::LinuxArm64];

    /// The platform of this machine's engine, for builds that must run here natively.
    pub(crate) fn host() -> Platform {
        match std::env::consts::ARCH {
            "aarch64" => Platform::LinuxArm64,
            _ => Platform::LinuxAmd64,
        }
    }

    pub(crate) fn arch(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "amd64",
            Platform::LinuxArm64 => "arm64",
        }
    }

    /// The machine name in wheel tags and ELF terms (`uname -m`).
    pub(crate) fn machine(self) -> &'static str {
        match self {
            Platform::LinuxAmd64 => "x86_64",
            Platform::LinuxArm64 => "aarch64",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "linux/{}", self.arch())
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Platform> {
        match text {
            "linux/amd64" => Ok(Platform::LinuxAmd64),
            "linux/arm64" | "linux/arm64/v8" => Ok(Platform::LinuxArm64),
            _ => bail!("unsupported platform {text:?}: supported are linux/amd64 and linux/arm64"),
        }
    }
}
