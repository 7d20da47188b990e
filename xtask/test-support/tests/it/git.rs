use test_support::git::TestRepo;

#[test]
fn a_test_repo_pushes_to_its_bare_remote() {
    let repo = TestRepo::new();
    repo.write("CHANGELOG.md", "# Changelog\n");
    let head = repo.commit_all("first");
    repo.git(&["push", "--quiet", "origin", "main"]);
    let remote = repo.remote().to_str().unwrap();
    let remote_head = repo.git(&["ls-remote", remote, "refs/heads/main"]);
    assert!(remote_head.starts_with(&head), "{remote_head}");
    assert_eq!(repo.git(&["branch", "--show-current"]), "main");
}
