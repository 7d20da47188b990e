//! The shell completions (bash, zsh, fish, PowerShell) and the man page of `stigmer`,
//! generated from the CLI's own clap definition: `cli/src/flags.rs` is compiled into
//! xtask as well, so every archive gets them on any build machine, for any target,
//! without running the target's binary. Owns their paths in the archive; `dist.rs`
//! packs them and `homebrew.rs` installs them. It must not grow a second definition of
//! the CLI's flags.

use clap::CommandFactory;
use clap_complete::Shell;

/// What `cli/src/flags.rs` reads from the CLI's `build_info`; the version is set from
/// the release's when the files are generated.
mod build_info {
    pub(crate) fn version() -> &'static str {
        ""
    }
    pub(crate) fn long_version() -> &'static str {
        ""
    }
}

// The CLI's own file: its fields are read by the CLI, not here, and its unit tests run
// in the CLI's crate.
#[allow(dead_code)]
#[path = "../../../cli/src/flags.rs"]
mod flags;

/// Where each generated file goes in an archive, below its top folder, and what the
/// formula installs it as.
pub(crate) const BASH: &str = "completions/stigmer.bash";
pub(crate) const ZSH: &str = "completions/_stigmer";
pub(crate) const FISH: &str = "completions/stigmer.fish";
pub(crate) const POWERSHELL: &str = "completions/_stigmer.ps1";
/// `stigmer.1`, and one page per subcommand as git has them (`stigmer-server-start.1`),
/// since `stigmer` alone has one subcommand and its page would say little.
pub(crate) const MAN_DIR: &str = "man/";

/// The completions and man pages of `stigmer` `version`: `(path in the archive,
/// bytes)`, in path order. A pure function of the flags and the version.
pub(crate) fn generate(version: &semver::Version) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let command = flags::Stigmer::command()
        .version(version.to_string())
        .long_version(version.to_string())
        .disable_help_subcommand(true);
    let mut files = Vec::new();
    for (path, shell) in
        [(BASH, Shell::Bash), (ZSH, Shell::Zsh), (FISH, Shell::Fish), (POWERSHELL, Shell::PowerShell)]
    {
        let mut bytes = Vec::new();
        clap_complete::generate(shell, &mut command.clone(), "stigmer", &mut bytes);
        files.push((path.to_owned(), bytes));
    }
    let mut pending = vec![command];
    while let Some(mut command) = pending.pop() {
        command.build();
        pending.extend(command.get_subcommands().filter(|sub| !sub.is_hide_set()).cloned());
        // No date: a page is the same whenever it is built, like the rest of the archive.
        let man = clap_mangen::Man::new(command).source(format!("stigmer {version}"));
        let mut page = Vec::new();
        man.render(&mut page)?;
        files.push((format!("{MAN_DIR}{}", man.get_filename()), page));
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_man_page() {
        let files = generate(&semver::Version::new(1, 3, 0)).unwrap();
        let pages: Vec<&str> = files
            .iter()
            .filter(|(path, _)| path.starts_with(MAN_DIR))
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(
            pages,
            [
                "man/stigmer-server-logs.1",
                "man/stigmer-server-start.1",
                "man/stigmer-server-status.1",
                "man/stigmer-server-stop.1",
                "man/stigmer-server.1",
                "man/stigmer.1"
            ]
        );
        for (path, page) in files.iter().filter(|(path, _)| path.starts_with(MAN_DIR)) {
            insta::assert_snapshot!(path.as_str(), String::from_utf8(page.clone()).unwrap());
        }
    }

    #[test]
    fn every_shell_gets_completions_of_the_server_subcommands() {
        for (path, bytes) in generate(&semver::Version::new(1, 3, 0)).unwrap() {
            if path.starts_with(MAN_DIR) {
                continue;
            }
            let text = String::from_utf8(bytes).unwrap();
            for word in ["start", "status", "stop", "logs"] {
                assert!(text.contains(word), "{path} lacks {word}");
            }
        }
    }
}
