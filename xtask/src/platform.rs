//! `Platform`: an OS/architecture pair in the container world's spelling
//! (`linux/amd64`), limited to the ones Stigmer ships; and `Target`, the CLI's
//! build targets in Rust's spelling with the seed's archive names.

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

/// A target the CLI ships for. Linux builds are static musl binaries: they run on any
/// distribution and in distroless or Alpine images, with no glibc version floor (the
/// seed's PyInstaller binaries failed on older glibc). Windows is the GNU target, which
/// zig links from Linux (MSVC's linker and libraries exist only on Windows); it needs no
/// MinGW DLL at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    DarwinArm64,
    DarwinAmd64,
    LinuxAmd64,
    LinuxArm64,
    WindowsAmd64,
}

impl Target {
    pub(crate) const ALL: [Target; 5] = [
        Target::DarwinArm64,
        Target::DarwinAmd64,
        Target::LinuxAmd64,
        Target::LinuxArm64,
        Target::WindowsAmd64,
    ];

    pub(crate) fn triple(self) -> &'static str {
        match self {
            Target::DarwinArm64 => "aarch64-apple-darwin",
            Target::DarwinAmd64 => "x86_64-apple-darwin",
            Target::LinuxAmd64 => "x86_64-unknown-linux-musl",
            Target::LinuxArm64 => "aarch64-unknown-linux-musl",
            Target::WindowsAmd64 => "x86_64-pc-windows-gnu",
        }
    }

    /// The seed's names, which the archives and the Homebrew formula use.
    pub(crate) fn os(self) -> &'static str {
        match self {
            Target::DarwinArm64 | Target::DarwinAmd64 => "darwin",
            Target::LinuxAmd64 | Target::LinuxArm64 => "linux",
            Target::WindowsAmd64 => "windows",
        }
    }

    pub(crate) fn arch(self) -> &'static str {
        match self {
            Target::DarwinArm64 | Target::LinuxArm64 => "arm64",
            Target::DarwinAmd64 | Target::LinuxAmd64 | Target::WindowsAmd64 => "amd64",
        }
    }

    /// Whether Homebrew (macOS and Linux) and install.sh serve this target.
    pub(crate) fn is_unix(self) -> bool {
        self.os() != "windows"
    }

    /// The binary's file name, in the archive and in cargo's output.
    pub(crate) fn binary_name(self) -> &'static str {
        if self.is_unix() {
            "stigmer"
        } else {
            "stigmer.exe"
        }
    }

    /// What Windows users open with Explorer, and every other platform's users with tar.
    pub(crate) fn archive_extension(self) -> &'static str {
        if self.is_unix() {
            ".tar.gz"
        } else {
            ".zip"
        }
    }

    /// The target of this machine: plain cargo builds it, no cross linker needed.
    pub(crate) fn host() -> Option<Target> {
        let os = match std::env::consts::OS {
            "macos" => "darwin",
            other => other,
        };
        let arch = match std::env::consts::ARCH {
            "aarch64" => "arm64",
            "x86_64" => "amd64",
            other => other,
        };
        Target::ALL.into_iter().find(|target| target.os() == os && target.arch() == arch)
    }

    pub(crate) fn from_os_arch(os: &str, arch: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|target| target.os() == os && target.arch() == arch)
    }

    pub(crate) fn archive_name(self, version: &semver::Version) -> String {
        format!("stigmer-v{version}-{}-{}{}", self.os(), self.arch(), self.archive_extension())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.triple())
    }
}

impl FromStr for Target {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Target> {
        if let Some(target) = Target::ALL.into_iter().find(|target| target.triple() == text) {
            return Ok(target);
        }
        let supported: Vec<&str> = Target::ALL.iter().map(|target| target.triple()).collect();
        bail!("unsupported target {text:?}: supported are {}", supported.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rust-toolchain.toml, which every build installs, names exactly the targets `dist`
    /// builds: a new target fails here until the toolchain has it too.
    #[test]
    fn the_toolchain_file_names_every_target_dist_builds() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rust-toolchain.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let file: toml_edit::DocumentMut = text.parse().unwrap();
        let listed: Vec<&str> = file["toolchain"]["targets"]
            .as_array()
            .expect("rust-toolchain.toml has [toolchain] targets")
            .iter()
            .map(|target| target.as_str().unwrap())
            .collect();
        let built: Vec<&str> = Target::ALL.iter().map(|target| target.triple()).collect();
        assert_eq!(listed, built, "rust-toolchain.toml's targets are not the ones dist builds");
    }
}
