//! Records the git commit labctl is built from, for `labctl --version`.

include!("build-support/git_commit.rs");

fn main() {
    record_git_commit("LABCTL_GIT_COMMIT");
}
