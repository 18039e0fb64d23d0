//! Records the git commit labnet is built from, for `labnet --version`.

include!("../../build-support/git_commit.rs");

fn main() {
    record_git_commit("LABNET_GIT_COMMIT");
}
