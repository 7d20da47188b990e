//! `--help` is the first documentation users read: its snapshots make every change to
//! it a reviewed one.

use test_support::shell;
use xshell::cmd;

use crate::{run_ok, XTASK};

#[test]
fn help_lists_every_subcommand() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} --help")));
}

#[test]
fn image_help_explains_its_flags() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} image --help")));
}

#[test]
fn test_help_explains_its_flags() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} test --help")));
}

#[test]
fn plan_help_explains_the_release_plan() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} plan --help")));
}

#[test]
fn base_image_help_explains_the_pin_and_the_bump() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} base-image --help")));
}

#[test]
fn verify_release_help_explains_what_a_rebuild_compares() {
    let sh = shell();
    insta::assert_snapshot!(run_ok(cmd!(sh, "{XTASK} verify-release --help")));
}
