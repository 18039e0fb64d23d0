// The git commit a binary is built from, for `--version`; shared by the build scripts
// of labctl and labnet (each includes this file).
//
// A build from a source archive without git history still works and says `unknown`.

/// Sets the compile-time variable `var` to the short commit, and asks cargo to run the
/// build script again when HEAD moves: HEAD itself (a checkout), the branch it names
/// (a commit), and packed refs. Only files that exist are named, since cargo reruns a
/// script whose watched path is missing on every build.
fn record_git_commit(var: &str) {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env={var}={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]).map(std::path::PathBuf::from) else {
        return;
    };
    let common = git(&["rev-parse", "--git-common-dir"])
        .map_or_else(|| git_dir.clone(), std::path::PathBuf::from);
    let mut watched = vec![git_dir.join("HEAD"), common.join("packed-refs")];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(common.join(branch));
    }
    for path in watched.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git <args>` in the package's directory, trimmed; `None` without git or a repository.
fn git(args: &[&str]) -> Option<String> {
    std::process::Command::new("git")
        .args(args)
        .current_dir(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}
